from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag() -> object:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.mark.parametrize("dag_id", ["faye_build", "faye_test"])
def test_dag_files_import_cleanly_with_the_shared_params(dagbag: object, dag_id: str) -> None:
    from faye_plugin.params import SCHEMAS

    errors = {k: v for k, v in dagbag.import_errors.items() if Path(k).stem in ("faye_build", "faye_test")}  # type: ignore[attr-defined]
    assert errors == {}
    dag = dagbag.dags[dag_id]  # type: ignore[attr-defined]
    assert set(dag.params) == set(SCHEMAS)
    assert dag.schedule is None or str(dag.timetable.summary) in ("None", "")
    assert dag.catchup is False and "faye" in dag.tags and dag.doc_md


def test_build_dag_ends_with_push_image(dagbag: object) -> None:
    dag = dagbag.dags["faye_build"]  # type: ignore[attr-defined]
    assert [t.task_id for t in dag.get_task("validate").downstream_list] == ["build.build_image"]
    assert [t.task_id for t in dag.get_task("build.build_image").downstream_list] == ["build.push_image"]
    assert dag.get_task("build.push_image").downstream_list == []


def test_test_runs_share_one_absolute_weight_in_the_test_server_pool(dagbag: object) -> None:
    from faye_plugin.settings import TEST_SERVERS_POOL

    run = dagbag.dags["faye_test"].get_task("test.run_tests")  # type: ignore[attr-defined]
    assert (
        run.pool == TEST_SERVERS_POOL
        and run.priority_weight == 1
        and str(run.weight_rule)
        in (
            "absolute",
            "WeightRule.ABSOLUTE",
        )
    )
    assert run.mount_tmp_dir is False and run.network_mode == "host" and run.auto_remove == "force"
    assert [t.task_id for t in run.upstream_list] == ["test.wait_for_preview"]
