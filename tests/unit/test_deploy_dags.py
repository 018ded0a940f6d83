"""The deploy and cleanup DAGs' shape and the branch decision, from the DAG files (no stack, no DB)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faye_plugin import steps

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import DagBag

    found = DagBag(dag_folder=str(DAGS), safe_mode=True)
    assert not found.import_errors
    return found


def test_deploy_steps_in_the_sketch_order(bag) -> None:
    dag = bag.dags["faye_deploy"]
    order = [t.task_id for t in dag.topological_sort()]
    sketch = [
        "get_cloud_run_config",
        "extend_expiry",
        "check_cloud_run",
        "check_image",
        "should_build",
        "build.push_image",
        "join",
        "prepare_configs",
        "release_slot",
        "deploy_revision",
        "update_proxy",
        "test.run_tests",
    ]
    positions = [order.index(t) for t in sketch]
    assert positions == sorted(positions), order
    assert dag.schedule is None or str(dag.timetable.summary) in ("None", "")
    assert dag.catchup is False and dag.doc_md and "faye" in dag.tags


def test_deploy_join_and_outcome_trigger_rules(bag) -> None:
    dag = bag.dags["faye_deploy"]
    assert dag.get_task("join").trigger_rule == "none_failed_min_one_success"
    assert {"build.push_image", "should_build"} <= dag.get_task("join").upstream_task_ids
    outcome = dag.get_task("preview_url")
    assert outcome.trigger_rule == "none_failed_min_one_success"
    assert {"check_cloud_run", "update_proxy"} <= outcome.upstream_task_ids
    assert "update_proxy" in dag.get_task("test.wait_for_preview").upstream_task_ids


def test_deploy_params_are_the_shared_schema(bag) -> None:
    params = bag.dags["faye_deploy"].params
    assert {"service", "pr", "git_sha", "slot", "ttl_hours", "force_build"} <= set(params.keys())


def test_cleanup_is_scheduled_one_run_at_a_time(bag) -> None:
    dag = bag.dags["faye_cleanup"]
    assert dag.max_active_runs == 1
    assert dag.schedule is not None
    assert dag.catchup is False
    assert dag.get_task("remove_dangling").trigger_rule == "none_failed"
    assert dag.get_task("remove_unused_revisions").upstream_task_ids == {"remove_dangling"}


@pytest.mark.parametrize(
    ("noop", "force", "image", "expected"),
    [
        (True, False, {"image": "x"}, []),
        (True, True, None, []),
        (False, False, None, ["build"]),
        (False, False, {"image": "x"}, ["join"]),
        (False, True, {"image": "x"}, ["build"]),
    ],
)
def test_should_build(noop, force, image, expected) -> None:
    assert steps.should_build({"force_build": force}, {"noop": noop, "reason": ""}, image) == expected
