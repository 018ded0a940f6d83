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
        "should_build",
        "build.push_image",
        "join",
        "still_newest",
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


def test_deploy_reads_run_side_by_side_and_all_feed_should_build(bag) -> None:
    dag = bag.dags["faye_deploy"]
    reads = {"extend_expiry", "check_cloud_run", "check_image"}
    for task_id in reads:
        assert dag.get_task(task_id).upstream_task_ids == {"get_cloud_run_config"}, task_id
    assert dag.get_task("should_build").upstream_task_ids == reads | {"get_cloud_run_config"}
    assert dag.get_task("get_cloud_run_config").upstream_task_ids == set()


def test_supersede_runs_beside_the_reads_and_finishes_before_the_safe_point(bag) -> None:
    dag = bag.dags["faye_deploy"]
    supersede = dag.get_task("supersede_older_runs")
    assert supersede.upstream_task_ids == set()
    assert supersede.downstream_task_ids == {"still_newest"}
    assert dag.get_task("still_newest").upstream_task_ids == {"join", "supersede_older_runs"}
    # every write comes after the safe point
    for write in ("release_slot", "deploy_revision", "update_proxy"):
        assert "still_newest" in dag.get_task(write).get_flat_relative_ids(upstream=True), write


def _hops(dag, task_id: str) -> int:
    """Dependency hops on the longest path from a root to ``task_id``."""
    upstream = dag.get_task(task_id).upstream_task_ids
    return 0 if not upstream else 1 + max(_hops(dag, u) for u in upstream)


def test_the_critical_path_is_ten_hops(bag) -> None:
    dag = bag.dags["faye_deploy"]
    # get_cloud_run_config > a read > should_build > join > still_newest > prepare_configs
    #   > release_slot > deploy_revision > update_proxy > test.wait_for_preview > test.run_tests
    # (13 hops when every step ran one after the other); a build adds its group's two steps.
    assert _hops(dag, "still_newest") == 4 + 2  # through build.build_image >> build.push_image
    assert _hops(dag, "test.run_tests") == 10 + 2


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
    assert dag.get_task("repair_lost").trigger_rule == "none_failed"
    assert dag.get_task("remove_dangling").trigger_rule == "none_failed"
    assert dag.get_task("repair_lost").upstream_task_ids == {"remove_expired"}
    assert dag.get_task("remove_dangling").upstream_task_ids == {"repair_lost"}
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
    cloud_run = {"noop": noop, "reason": "", "revision": "hello-pr-1-abc1234"}
    expiry = {"extended_revision": "hello-pr-1-abc1234"}
    assert steps.should_build({"force_build": force}, cloud_run, image, expiry) == expected


@pytest.mark.parametrize("extended", [None, "hello-pr-1-0000000"])
def test_no_noop_when_the_expiry_write_did_not_extend_the_checked_preview(extended) -> None:
    """check_cloud_run and extend_expiry run side by side: a cleanup between them removed the preview
    (the expiry write found no record or tag: None) or another deploy replaced it (another revision).
    Declaring a no-op then would leave the run green with no preview; it deploys again instead."""
    cloud_run = {"noop": True, "reason": "pr-1 already serves", "revision": "hello-pr-1-abc1234"}
    expiry = {"extended_revision": extended}
    assert steps.should_build({"force_build": False}, cloud_run, {"image": "x"}, expiry) == ["join"]
    assert steps.should_build({"force_build": False}, cloud_run, None, expiry) == ["build"]


def test_github_reports_beside_the_reads_and_last_without_deciding_the_run(bag) -> None:
    dag = bag.dags["faye_deploy"]
    started = dag.get_task("report_started")
    assert started.upstream_task_ids == {"get_cloud_run_config"}
    assert started.downstream_task_ids == {"report_outcome"}  # nothing of the deploy waits for it
    reported = dag.get_task("report_outcome")
    assert reported.upstream_task_ids == {"preview_url", "test.run_tests", "report_started"}
    assert reported.downstream_task_ids == set()
    # a teardown task: runs whatever happened; its failure does not fail the run
    assert reported.is_teardown and not reported.on_failure_fail_dagrun
    assert reported.trigger_rule == "all_done_setup_success"
    # every task of the deploy is done before it looks at the run
    assert set(dag.task_ids) - {"report_outcome"} <= reported.get_flat_relative_ids(upstream=True)


def test_teardown_reports_to_github_after_its_outcome(bag) -> None:
    dag = bag.dags["faye_teardown"]
    report = dag.get_task("report_teardown")
    assert report.upstream_task_ids == {"teardown_outcome"}
    assert report.is_teardown and not report.on_failure_fail_dagrun
    order = [t.task_id for t in dag.topological_sort()]
    assert order == [
        "stop_deploys",
        "remove_route",
        "remove_tag_and_record",
        "teardown_outcome",
        "report_teardown",
    ]


def test_rollback_reports_to_github_after_its_outcome(bag) -> None:
    dag = bag.dags["faye_rollback"]
    report = dag.get_task("report_rollback")
    assert report.upstream_task_ids == {"rollback_outcome"}
    assert report.is_teardown and not report.on_failure_fail_dagrun
