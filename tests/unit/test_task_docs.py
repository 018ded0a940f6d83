"""Docs in the UI: every task of faye's DAGs has a doc, every DAG a description, faye as owner."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
FAYE_DAGS = ("faye_deploy", "faye_build", "faye_test", "faye_cleanup", "faye_teardown", "faye_rollback")


@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import DagBag

    found = DagBag(dag_folder=str(DAGS), safe_mode=True)
    assert not found.import_errors
    return found


@pytest.mark.parametrize("dag_id", FAYE_DAGS)
def test_every_task_has_a_doc_and_faye_owns_it(bag, dag_id: str) -> None:
    dag = bag.dags[dag_id]
    undocumented = [
        t.task_id for t in dag.tasks if not (getattr(t, "doc_md", None) or getattr(t, "doc", None))
    ]
    assert undocumented == []
    assert {t.owner for t in dag.tasks} == {"faye"}
    assert dag.description


@pytest.mark.parametrize("dag_id", FAYE_DAGS)
def test_dag_doc_opens_with_what_it_does_then_how_to_read_a_run(bag, dag_id: str) -> None:
    doc = bag.dags[dag_id].doc_md
    reading, triggering = doc.index("**Reading a run.**"), doc.index("POST /api/v2/dags/")
    assert reading < triggering
    assert "failed at <step>" in doc


def test_deploy_doc_explains_noop_skipped_build_superseding_and_slot(bag) -> None:
    doc = bag.dags["faye_deploy"].doc_md
    for words in ("no change: already serving", "skipped build", "superseded by", "slot"):
        assert words in doc
