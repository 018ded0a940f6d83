"""The run-note listener never breaks the transaction it runs in (the scheduler's).

The raced case is made to happen: another writer (the api-server's PATCH of a superseded run)
commits the run's note after the scheduler loaded the run and before the listener writes its own.
The listener runs under the scheduler's own guard (``prohibit_commit``: any commit but the loop's,
a savepoint's release included, raises), as it does in the scheduler's loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from faye_plugin import run_listener


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    from airflow.models import import_all_models
    from airflow.models.dagrun import DagRun, DagRunNote
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.tasklog import LogTemplate
    from airflow.models.xcom import XComModel

    import_all_models()  # the tables' foreign keys name the others
    eng = create_engine(f"sqlite:///{tmp_path / 'airflow.db'}")
    tables = [LogTemplate.__table__, DagRun.__table__, DagRunNote.__table__]  # what a run row needs
    tables += [TaskInstance.__table__, XComModel.__table__]  # what the end note reads
    DagRun.metadata.create_all(eng, tables=tables)
    yield eng
    eng.dispose()


def _queued_run(eng: Engine) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    with Session(eng) as session:
        session.add(
            DagRun(
                dag_id="faye_deploy",
                run_id="hello-pr-1-abc1234-20261202T000000.000Z",
                run_type=DagRunType.MANUAL,
                state=DagRunState.QUEUED,
                conf={"service": "hello", "pr": 1, "git_sha": "abc1234"},
            )
        )
        session.commit()


def test_a_note_written_first_elsewhere_is_kept_and_the_callers_commit_succeeds(engine: Engine) -> None:
    from airflow.models.dagrun import DagRun, DagRunNote

    _queued_run(engine)
    scheduler = Session(engine)
    dag_run = scheduler.scalar(select(DagRun))
    assert dag_run is not None and dag_run.note is None  # loaded before the other writer's commit
    with Session(engine) as api_server:
        now = datetime.now(UTC)
        api_server.execute(
            DagRunNote.__table__.insert().values(
                dag_run_id=dag_run.id, content="superseded by newer", created_at=now, updated_at=now
            )
        )
        api_server.commit()

    from airflow.utils.sqlalchemy import prohibit_commit

    with prohibit_commit(scheduler) as guard:
        dag_run.state = "running"  # the scheduler's own change in the same transaction
        run_listener.on_dag_run_running(dag_run, "started")
        guard.commit()  # a plain ORM insert: IntegrityError on dag_run_note's key, here

    with Session(engine) as check:
        assert check.scalar(select(DagRunNote.content)) == "superseded by newer"
        assert check.scalar(select(DagRun.state)) == "running"
    scheduler.close()


def test_a_free_note_is_written(engine: Engine) -> None:
    from airflow.models.dagrun import DagRun, DagRunNote

    _queued_run(engine)
    with Session(engine) as scheduler:
        from airflow.utils.sqlalchemy import prohibit_commit

        dag_run = scheduler.scalar(select(DagRun))
        assert dag_run is not None
        with prohibit_commit(scheduler) as guard:
            run_listener.on_dag_run_running(dag_run, "started")
            guard.commit()
        note = scheduler.scalar(select(DagRunNote.content))
        assert note is not None and note.startswith("running: ") and "PR 1" in note, note
        assert dag_run.note == note  # the ORM object reads the row, not a stale relationship


def test_the_end_note_replaces_the_start_note(engine: Engine) -> None:
    from airflow.models.dagrun import DagRun, DagRunNote
    from airflow.utils.sqlalchemy import prohibit_commit

    _queued_run(engine)
    with Session(engine) as scheduler:
        dag_run = scheduler.scalar(select(DagRun))
        assert dag_run is not None
        with prohibit_commit(scheduler) as guard:
            run_listener.on_dag_run_running(dag_run, "started")
            guard.commit()
            dag_run.state = "failed"
            run_listener.on_dag_run_failed(dag_run, "failed")
            guard.commit()
        notes = list(scheduler.scalars(select(DagRunNote.content)))
        assert len(notes) == 1 and notes[0].startswith("failed"), notes
