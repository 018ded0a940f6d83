"""The run note of a faye run: what the Airflow UI's runs list says about it, in one line.

The note's first word is the run's outcome, so a person can tell the runs apart at a glance:

- ``running: hello PR 777 at 74b5f9f, slot a`` (or ``slot: chosen by faye``) while it runs;
- ``deployed: http://a.preview.localhost:28701 (hello PR 777 at 74b5f9f, slot a)`` on success;
- ``no change: already serving 74b5f9f at http://... (hello PR 777, slot a)`` on a no-op;
- ``failed at <task>: <one-line reason> (hello PR 777 at 74b5f9f)`` on a failure;
- ``torn down: hello PR 777 (route a, tag pr-777, record)`` or ``no change: hello PR 777 has no
  preview`` when a ``faye_teardown`` ends; ``rolled back: <slot URL> now serves <sha> (...)`` when a
  ``faye_rollback`` does;
- ``superseded by <run id>`` when a newer deploy of the same PR took over. The run's *state* is
  then ``failed`` too: Airflow 3.3 has no other end state for a run (PATCH accepts only
  queued/success/failed, and ``success`` would claim a preview that was never deployed), so the
  note's first word is what tells a superseded run from a failed one.

Pure functions only; :mod:`faye_plugin.run_listener` writes them at the run's start and end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SUPERSEDED = "superseded by"
FAILED = "failed at"
NOTE_MAX = 1000  # dag_run_note.content is String(1000)
SHORT_SHA = 7
# What a successful run of each request DAG did.
DONE_WORD = {"faye_deploy": "deployed", "faye_build": "built", "faye_test": "tests passed"}


def _sha(value: Any) -> str:
    return str(value or "?")[:SHORT_SHA]


#: The DAGs that act on a PR's existing preview, and what their note calls the act.
ACTIONS = {"faye_teardown": "teardown", "faye_rollback": "rollback"}


def subject(conf: Mapping[str, Any], slot: str | None = None) -> str:
    """``hello PR 777 at 74b5f9f, slot a`` from a request's conf (and the slot faye chose);
    ``hello PR 777`` from a conf without a commit (a teardown's or a rollback's)."""
    if not conf.get("service"):
        return ""
    if "git_sha" not in conf:
        return f"{conf['service']} PR {conf.get('pr', '?')}"
    slot = slot or conf.get("slot")
    where = f"slot {slot}" if slot else "slot: chosen by faye"
    return f"{conf['service']} PR {conf.get('pr', '?')} at {_sha(conf.get('git_sha'))}, {where}"


def _cut(note: str) -> str:
    return note if len(note) <= NOTE_MAX else note[: NOTE_MAX - 1] + "…"


def start_note(conf: Mapping[str, Any], dag_id: str = "") -> str:
    """The note a run gets when it starts."""
    what = subject(conf)
    if dag_id in ACTIONS and what:
        to = f" to {conf['revision']}" if conf.get("revision") else ""
        return _cut(f"running: {ACTIONS[dag_id]} of {what}{to}")
    return _cut(f"running: {what}" if what else "running")


def success_note(dag_id: str, conf: Mapping[str, Any], outcome: Mapping[str, Any] | None) -> str:
    """The note of a run that succeeded; ``outcome`` is faye_deploy's ``preview_url`` result."""
    outcome = outcome or {}
    if dag_id == "faye_teardown":
        return teardown_note(conf, outcome)
    if dag_id == "faye_rollback":
        return rollback_note(conf, outcome)
    slot = outcome.get("slot")
    url = outcome.get("slot_url") or outcome.get("url")
    if outcome.get("noop"):
        sha = _sha(outcome.get("sha") or conf.get("git_sha"))
        where = f" at {url}" if url else ""
        who = f"{conf.get('service')} PR {conf.get('pr')}, slot {slot}"
        return _cut(f"no change: already serving {sha}{where} ({who})")
    word = DONE_WORD.get(dag_id, "succeeded")
    what = subject(conf, slot)
    if url:
        return _cut(f"{word}: {url} ({what})" if what else f"{word}: {url}")
    return _cut(f"{word}: {what}" if what else word)


def teardown_note(conf: Mapping[str, Any], outcome: Mapping[str, Any]) -> str:
    """``torn down: hello PR 7 (route a, tag pr-7, record)``, or ``no change: ... has no preview``."""
    what = subject(conf)
    if outcome.get("skipped"):
        return _cut(f"no change: {what} kept, {outcome['skipped']}")
    gone = [f"route {slot}" for slot in outcome.get("routes_removed") or []]
    gone += [f"tag {outcome.get('tag')}"] if outcome.get("tag_removed") else []
    gone += ["record"] if outcome.get("record_removed") else []
    if not gone:
        return _cut(f"no change: {what} has no preview")
    return _cut(f"torn down: {what} ({', '.join(gone)})")


def rollback_note(conf: Mapping[str, Any], outcome: Mapping[str, Any]) -> str:
    """``rolled back: <slot URL> now serves <sha> (hello PR 7, revision <name>, was <sha>)``."""
    url = outcome.get("slot_url") or outcome.get("url") or "the preview"
    details = f"{subject(conf)}, revision {outcome.get('revision', '?')}, was {_sha(outcome.get('from_sha'))}"
    return _cut(f"rolled back: {url} now serves {_sha(outcome.get('sha'))} ({details})")


def failed_note(conf: Mapping[str, Any], task_id: str | None, reason: str | None) -> str:
    """The note of a run that failed at ``task_id`` for ``reason`` (one line)."""
    step = task_id or "an unknown step"
    why = one_line(reason) if reason else "see the step's log"
    what = subject(conf)
    return _cut(f"{FAILED} {step}: {why}" + (f" ({what})" if what else ""))


def superseded_note(by_run_id: str) -> str:
    """The one wording of a superseded run's note."""
    return _cut(f"{SUPERSEDED} {by_run_id}")


def superseded_by(note: str | None) -> str | None:
    """The run id a note says superseded this run (any of faye's past wordings), else None."""
    if not note or not note.startswith(SUPERSEDED):
        return None
    rest = note[len(SUPERSEDED) :].strip()
    run_id = rest.split()[0].rstrip(":,") if rest else ""
    return run_id or "?"


def one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of ``text``, at most ``limit`` characters."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def end_note(
    dag_id: str,
    conf: Mapping[str, Any],
    state: str,
    current: str | None,
    *,
    outcome: Mapping[str, Any] | None = None,
    failed_task: str | None = None,
    reason: str | None = None,
) -> str | None:
    """The note a run ends with, or None to keep ``current``.

    A superseded run keeps that (in the one wording) whatever its state; a run that already says
    why it failed keeps that.
    """
    by = superseded_by(current)
    if by is not None:
        return superseded_note(by)
    if state == "success":
        return success_note(dag_id, conf, outcome)
    if state == "failed":
        if current and current.startswith(FAILED) and reason is None:
            return None
        return failed_note(conf, failed_task, reason)
    return None
