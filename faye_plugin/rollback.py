"""Which revision a rollback moves a PR's tag back to, and which revisions cleanup keeps for it: pure.

Every preview revision carries faye's labels (``faye-pr``, ``faye-sha``; set at deploy, immutable), so
a PR's revisions are found on Cloud Run itself, newest first, and only ready ones are candidates.
:mod:`faye_plugin.operators.rollback` reads the revisions and applies the choice as one preview-state
transition (:meth:`faye_plugin.preview_state.PreviewState.roll_back`) with the traffic change, in one
etag-guarded write. Nothing here does I/O (tests/unit/test_rollback.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from faye_plugin.exceptions import RollbackError
from faye_plugin.previews import LABEL_PR, LABEL_SHA

READY = "CONDITION_SUCCEEDED"


@dataclass(frozen=True)
class RevisionInfo:
    """One revision of a service, as a rollback needs it."""

    name: str  # short name
    pr: int | None  # its ``faye-pr`` label (None: not a preview revision)
    sha: str
    created: float  # epoch seconds
    ready: bool


def _state_name(state: Any) -> str:
    return str(getattr(state, "name", state))


def revision_info(revision: Any) -> RevisionInfo:
    """A RevisionInfo from a ``run_v2.Revision`` (or anything with its fields)."""
    labels = dict(revision.labels)
    try:
        pr: int | None = int(labels[LABEL_PR])
    except (KeyError, ValueError):
        pr = None
    ready = any(
        c.type_ == "Ready" and _state_name(c.state).endswith(READY)
        for c in getattr(revision, "conditions", ())
    )
    created = revision.create_time.timestamp() if revision.create_time else 0.0
    return RevisionInfo(
        name=str(revision.name).rsplit("/", 1)[-1],
        pr=pr,
        sha=labels.get(LABEL_SHA, ""),
        created=created,
        ready=ready,
    )


def ready_revisions(revisions: Iterable[RevisionInfo], pr: int) -> list[RevisionInfo]:
    """The PR's ready revisions, newest first."""
    return sorted(
        (r for r in revisions if r.pr == pr and r.ready), key=lambda r: (r.created, r.name), reverse=True
    )


def choose_target(
    revisions: Sequence[RevisionInfo], *, service: str, pr: int, current: str | None, to: str | None = None
) -> RevisionInfo:
    """The revision PR ``pr``'s tag goes back to: ``to`` when given, else the PR's newest ready revision
    created before the one its tag serves now (``current``).

    Raises RollbackError, one line naming what to do, when ``to`` is not a revision of ``service``, is
    another PR's, is not ready or is the one served already, or when no earlier ready revision exists.
    """
    if current is None:
        raise RollbackError(
            f"{service} PR {pr} has no preview to roll back (its tag pr-{pr} serves nothing): "
            f"deploy it first (faye deploy --service {service} --pr {pr} --sha SHA)"
        )
    by_name = {r.name: r for r in revisions}
    if to is not None:
        chosen = by_name.get(to)
        if chosen is None:
            raise RollbackError(
                f"revision {to} is not a revision of service {service}: "
                f"pick one of PR {pr}'s ({_names(ready_revisions(revisions, pr))})"
            )
        if chosen.pr != pr:
            whose = f"PR {chosen.pr}'s" if chosen.pr is not None else "not a preview revision"
            raise RollbackError(
                f"revision {to} is {whose}, not PR {pr}'s: "
                f"pick one of PR {pr}'s ({_names(ready_revisions(revisions, pr))})"
            )
        if not chosen.ready:
            raise RollbackError(f"revision {to} of {service} PR {pr} is not ready: pick a ready one")
        if chosen.name == current:
            raise RollbackError(f"{service} PR {pr} already serves {to}: nothing to roll back")
        return chosen
    served = by_name.get(current)
    older = [
        r
        for r in ready_revisions(revisions, pr)
        if r.name != current and (served is None or (r.created, r.name) < (served.created, served.name))
    ]
    if not older:
        raise RollbackError(
            f"{service} PR {pr} has no ready revision older than {current} to roll back to: "
            f"deploy the commit you want instead (faye deploy --service {service} --pr {pr} --sha SHA)"
        )
    return older[0]


def _names(revisions: Sequence[RevisionInfo]) -> str:
    return ", ".join(r.name for r in revisions[:10]) or "none ready"


def kept_for_rollback(revisions: Iterable[RevisionInfo], served: Mapping[int, str]) -> set[str]:
    """The revision each served PR would roll back to (``served``: PR -> the revision its tag serves).

    faye_cleanup keeps these although no traffic target refers to them: one per preview, so a
    rollback always has its previous ready revision, and Cloud Run's 1000-revision limit stays far.
    """
    revisions = list(revisions)
    kept: set[str] = set()
    for pr, current in served.items():
        try:
            kept.add(choose_target(revisions, service="", pr=pr, current=current).name)
        except RollbackError:
            continue
    return kept
