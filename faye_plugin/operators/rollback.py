"""``faye_rollback``'s write: move a PR's tag back to an earlier ready revision, with its record.

The revision is chosen by :func:`faye_plugin.rollback.choose_target` from the PR's revisions on Cloud
Run (faye's labels), and written as one :mod:`faye_plugin.preview_state` transition
(:meth:`~faye_plugin.preview_state.PreviewState.roll_back`) together with the traffic change
(:func:`~faye_plugin.hooks.cloud_run.with_tag_on`: percents never change) in one etag-guarded write.
The slot keeps its route: the route's upstream is the tag URL, which stays; ``update_proxy`` then
rewrites the route's facts (sha, revision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from faye_plugin.catalogue import load_catalogue
from faye_plugin.exceptions import CloudRunApiError, RollbackError, SupersededError

if TYPE_CHECKING:
    from airflow.sdk import Context


class RollbackOperator(BaseOperator):
    """Point the PR's tag and record at its previous ready revision (or ``revision``) in one write.

    Returns ``{"service", "pr", "sha", "slot", "tag", "revision", "url", "from_revision", "from_sha"}``
    (the shape ``update_proxy`` takes). Fails with one line naming what to do (RollbackError) when the
    PR has no preview, no earlier ready revision, or ``revision`` is not a ready revision of this PR.

    :param service: the catalogue's service name (templated).
    :param pr: the pull request number (templated).
    :param revision: the revision to go back to; None: the newest ready one older than the served one
        (templated).
    """

    template_fields: Sequence[str] = ("service", "pr", "revision")
    ui_color = "#d6e9ff"

    def __init__(self, *, service: str, pr: int | str, revision: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr
        self.revision = revision

    def execute(self, context: Context) -> dict[str, Any]:
        from faye_plugin import preview_state
        from faye_plugin.hooks.cloud_run import (
            CloudRunPreviewHook,
            preview_tag,
            tag_revision,
            tag_uri,
            with_tag_on,
        )
        from faye_plugin.operators.teardown import newer_write, trigger_ms
        from faye_plugin.rollback import choose_target, revision_info

        spec = load_catalogue().service(str(self.service))
        pr = int(self.pr)
        tag = preview_tag(pr)
        wanted = None if self.revision in (None, "", "None") else str(self.revision)
        target = spec.cloud_run
        hook = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id)
        since_ms = trigger_ms(context)
        seen: dict[str, Any] = {}

        def roll_back(state: preview_state.PreviewState, current: Any) -> preview_state.Planned:
            record = state.get(pr)
            if current is None or record is None or not record.slot or not record.revision:
                raise RollbackError(
                    f"{spec.name} PR {pr} has no preview to roll back: "
                    f"deploy it first (faye deploy --service {spec.name} --pr {pr} --sha SHA)"
                )
            why = newer_write(state, pr, since_ms)
            if why:
                raise SupersededError(why)
            revisions = [
                revision_info(r)
                for r in hook.list_revisions(
                    project=target.project, region=target.region, service=target.service
                )
            ]
            served = tag_revision(current, tag)
            chosen = choose_target(revisions, service=spec.name, pr=pr, current=served, to=wanted)
            seen.update(chosen=chosen, record=record, served=served)
            return preview_state.Planned(
                state.roll_back(pr, sha=chosen.sha, revision=chosen.name, requested_ms=since_ms),
                with_tag_on(current, tag, chosen.name),
                update_mask=("traffic",),
            )

        preview_state.apply(
            hook, project=target.project, region=target.region, service=target.service, transition=roll_back
        )
        chosen, record = seen["chosen"], seen["record"]
        written = hook.get_service(project=target.project, region=target.region, service=target.service)
        serving = tag_revision(written, tag) if written is not None else None
        url = tag_uri(written, tag) if written is not None else None
        if serving != chosen.name or not url:
            raise CloudRunApiError(
                409,
                "ABORTED",
                f"tag {tag} serves {serving!r} at {url!r}, not {chosen.name}: another write moved it",
            )
        self.log.info(
            "Rolled %s of %s back from %s (sha %s) to %s (sha %s)",
            tag,
            spec.name,
            seen["served"],
            record.sha[:7],
            chosen.name,
            chosen.sha[:7],
        )
        return {
            "service": spec.name,
            "pr": pr,
            "sha": chosen.sha,
            "slot": record.slot,
            "tag": tag,
            "revision": chosen.name,
            "url": url,
            "from_revision": seen["served"],
            "from_sha": record.sha,
        }
