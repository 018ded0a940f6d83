"""Run notes without a task: an Airflow listener writes each faye run's note at its start and end.

Airflow 3.3 calls the DAG-run listener hooks (``airflow/listeners/spec/dagrun.py``) in the process
that changes the run's state, with the run's ORM object inside that process's open transaction:

- the **scheduler** when it starts a queued run (``on_dag_run_running``, ``_start_queued_dagruns``)
  and when it ends one (``DagRun.update_state``: success, failed, deadlocked);
- the **api-server** when a run's state is PATCHed (``patch_dag_run_state``; the PATCH's note is
  applied before, so a superseding PATCH's note is seen here).

So the note is set on that object and committed with the state change itself: no task on the
critical path, no REST round trip, however the run was triggered (faye's CLI, CI's curl, a raw REST
call, the UI's trigger form). The row of the run is locked by the writer (``SELECT ... FOR UPDATE``
in the scheduler on PostgreSQL; SQLite's single writer), so a REST PATCH of the same note waits for
it rather than racing it. A failing hook never fails the state change: Airflow logs it and goes on;
the note's own insert does nothing if another writer's note is there (:func:`_write`), so a
collision cannot fail the transaction later.

The note's words come from :mod:`faye_plugin.run_notes`; the failed step's reason is the XCom
``faye_error`` that :mod:`faye_plugin.task_errors` records before the task reports its failure.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from airflow.listeners import hookimpl

from faye_plugin import run_notes
from faye_plugin.task_errors import REASON_KEY

log = logging.getLogger(__name__)
OUTCOME_TASK = "preview_url"  # faye_deploy's last step returns the preview's URLs
# The DAGs whose outcome another last step returns.
OUTCOME_TASKS = {"faye_teardown": "teardown_outcome", "faye_rollback": "rollback_outcome"}


def is_faye_dag(dag_id: str) -> bool:
    return dag_id.startswith("faye_")


def _conf(dag_run: Any) -> dict[str, Any]:
    conf = getattr(dag_run, "conf", None)
    return dict(conf) if isinstance(conf, dict) else {}


def _xcom(dag_run: Any, key: str, task_ids: list[str] | None = None) -> list[tuple[str, Any]]:
    """(task_id, value) of the run's XComs ``key`` (of ``task_ids``), read in the caller's session."""
    from airflow.models.xcom import XComModel
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:
        return []
    query = XComModel.get_many(
        run_id=dag_run.run_id, key=key, dag_ids=dag_run.dag_id, task_ids=task_ids, map_indexes=None
    )
    rows: list[Any] = list(session.scalars(query))
    return [(row.task_id, XComModel.deserialize_value(row)) for row in rows]


def _first_failure(dag_run: Any) -> tuple[str | None, str | None]:
    """The task that failed first and the one-line reason it recorded (None if it recorded none)."""
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:
        return None, None
    failed = list(dag_run.get_task_instances(state=[TaskInstanceState.FAILED], session=session))
    if not failed:
        return None, None
    first = min(failed, key=lambda ti: (ti.end_date is None, ti.end_date or 0))
    reasons = dict(_xcom(dag_run, REASON_KEY, [first.task_id]))
    reason = reasons.get(first.task_id)
    return first.task_id, str(reason) if reason else None


def _stored_note(dag_run: Any) -> str | None:
    """The run's note as the database has it now, not as this process loaded it.

    Our own pending changes are flushed first: on SQLite that takes the database's one write lock, so
    no other writer can commit a note between this read and our write; on PostgreSQL the insert in
    :func:`_write` is the guard.
    """
    from airflow.models.dagrun import DagRunNote
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None or dag_run.id is None:
        return dag_run.note
    session.flush()
    query = select(DagRunNote.content).where(DagRunNote.dag_run_id == dag_run.id)
    return session.scalar(query)


def _write(dag_run: Any, note: str | None, why: str, started: float, current: str | None) -> None:
    """Set the run's note (``current`` is what :func:`_stored_note` read) in the caller's transaction.

    The note row may be written at the same moment by the api-server (a superseding run's PATCH of
    this run's state and note). An ORM insert would then collide on the note table's key at the
    caller's next flush, and that IntegrityError ends the scheduler's loop, and the scheduler with it
    (a savepoint cannot help: the scheduler forbids any commit inside its loop, a savepoint's release
    included). So a new note goes in as ``INSERT ... ON CONFLICT DO NOTHING``: the other writer's note
    wins. An existing row is updated in place.
    """
    from airflow.models.dagrun import DagRunNote
    from sqlalchemy import update
    from sqlalchemy.orm import object_session

    if note is None or note == current:
        return
    session = object_session(dag_run)
    if session is None or dag_run.id is None:
        dag_run.note = note
    elif current is not None:
        session.execute(update(DagRunNote).where(DagRunNote.dag_run_id == dag_run.id).values(content=note))
        session.expire(dag_run, ["dag_run_note"])
    else:
        session.execute(_insert_unless_present(session, dag_run.id, note))
        session.expire(dag_run, ["dag_run_note"])
    log.info(
        "faye run note (%s) of %s: %r, %.1f ms",
        why,
        dag_run.run_id,
        note,
        (time.perf_counter() - started) * 1e3,
    )


def _insert_unless_present(session: Any, dag_run_id: int, note: str) -> Any:
    """``INSERT`` of the note row that does nothing when the row exists (per database dialect)."""
    from airflow.models.dagrun import DagRunNote

    now = datetime.now(UTC)
    values = {
        "dag_run_id": dag_run_id,
        "content": note,
        "user_id": None,
        "created_at": now,
        "updated_at": now,
    }
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(DagRunNote).values(**values).on_conflict_do_nothing()
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(DagRunNote).values(**values).on_conflict_do_nothing()
    from sqlalchemy import insert

    return insert(DagRunNote).values(**values).prefix_with("IGNORE")  # MySQL


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    """A started faye run says which service, PR, sha and slot it is for (an earlier note is kept)."""
    if not is_faye_dag(dag_run.dag_id):
        return
    started = time.perf_counter()
    current = _stored_note(dag_run)
    if current:
        return
    _write(dag_run, run_notes.start_note(_conf(dag_run), dag_run.dag_id), "start", started, current)


def _end(dag_run: Any, state: str) -> None:
    if not is_faye_dag(dag_run.dag_id):
        return
    started = time.perf_counter()
    conf = _conf(dag_run)
    current = _stored_note(dag_run)
    outcome = failed_task = reason = None
    if run_notes.superseded_by(current) is None:
        if state == "success":
            task_id = OUTCOME_TASKS.get(dag_run.dag_id, OUTCOME_TASK)
            outcome = dict(_xcom(dag_run, "return_value", [task_id])).get(task_id)
        else:
            failed_task, reason = _first_failure(dag_run)
    note = run_notes.end_note(
        dag_run.dag_id,
        conf,
        state,
        current,
        outcome=outcome if isinstance(outcome, dict) else None,
        failed_task=failed_task,
        reason=reason,
    )
    _write(dag_run, note, state, started, current)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    """The preview's URL, or ``no change: already serving <sha>``; a superseded run keeps saying so."""
    _end(dag_run, "success")


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    """The failed step and its one-line reason, or ``superseded by <run>`` in the one wording."""
    _end(dag_run, "failed")
