"""The queue's pure rules (superseding, safe points) and the rows of ``faye queue``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from faye_plugin.cli.queue import queue_rows, waiting_for
from faye_plugin.queue import (
    RunInfo,
    TagRequest,
    TaskState,
    in_critical_section,
    is_superseded,
    past_safe_point,
    plan_supersede,
    safe_point_decision,
    superseded_note,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def run(
    run_id: str,
    minute: int,
    *,
    pr: int = 7,
    service: str = "hello",
    dag_id: str = "faye_deploy",
    state: str = "running",
    sha: str = "a" * 40,
    priority: int = 0,
    note: str | None = None,
) -> RunInfo:
    return RunInfo(
        dag_id=dag_id,
        run_id=run_id,
        state=state,
        run_after=T0 + timedelta(minutes=minute),
        conf={"service": service, "pr": pr, "git_sha": sha, "priority": priority},
        note=note,
    )


def tis(**states: str | None) -> list[TaskState]:
    return [TaskState(task_id=k, state=v) for k, v in states.items()]


# ------------------------------------------------------------------------------------------ supersede


def test_newer_run_cancels_an_older_one_not_yet_at_its_safe_point() -> None:
    old, new = run("old", 0), run("new", 1)
    plan = plan_supersede(new, [old, new], {"old": tis(check_image="running", still_newest=None)})
    assert [r.run_id for r in plan.cancel] == ["old"]
    assert plan.wait_for == () and plan.superseded_by is None


def test_an_older_run_inside_its_writes_is_waited_for_not_cancelled() -> None:
    old, new = run("old", 0), run("new", 1)
    old_tis = tis(still_newest="success", release_slot="success", deploy_revision="deferred")
    plan = plan_supersede(new, [old, new], {"old": old_tis})
    assert plan.cancel == ()
    assert [r.run_id for r in plan.wait_for] == ["old"]
    decision = safe_point_decision(new, [old, new], {"old": old_tis})
    assert decision.action == "wait" and decision.other_run_id == "old"


def test_a_run_whose_safe_point_check_is_running_is_not_cancelled() -> None:
    assert past_safe_point(tis(still_newest="running"))
    assert not past_safe_point(tis(still_newest="up_for_reschedule"))
    assert not past_safe_point(tis(still_newest="queued", build="running"))
    assert past_safe_point(tis(still_newest=None, release_slot="running"))


def test_critical_section_ends_when_the_proxy_is_updated() -> None:
    assert in_critical_section(tis(still_newest="success", update_proxy="queued"))
    assert not in_critical_section(tis(still_newest="success", update_proxy="success"))
    assert not in_critical_section(tis(still_newest="success", update_proxy="upstream_failed"))
    assert not in_critical_section(tis(still_newest="scheduled"))


def test_an_older_run_finds_itself_superseded() -> None:
    old, new = run("old", 0), run("new", 1)
    plan = plan_supersede(old, [old, new], {})
    assert plan.superseded_by == new and plan.cancel == ()
    decision = safe_point_decision(old, [old, new], {})
    assert decision.action == "superseded" and "new" in decision.reason


def test_other_prs_services_dags_and_finished_runs_are_left_alone() -> None:
    me = run("me", 5)
    others = [
        run("other-pr", 0, pr=8),
        run("other-service", 0, service="world"),
        run("cleanup", 0, dag_id="faye_cleanup"),
        run("a-test", 0, dag_id="faye_test"),
        run("finished", 0, state="success"),
    ]
    plan = plan_supersede(me, [*others, me], {})
    assert plan == plan_supersede(me, [me], {})
    assert plan.cancel == () and plan.wait_for == () and plan.superseded_by is None


def test_trigger_time_ties_are_broken_by_run_id() -> None:
    a, b = run("manual__a", 0), run("manual__b", 0)
    assert plan_supersede(b, [a, b], {}).cancel == (a,)
    assert plan_supersede(a, [a, b], {}).superseded_by == b


def test_an_older_request_never_overwrites_a_newer_finished_deploy() -> None:
    me = run("late-old", 0)
    newer_done = TagRequest(
        run_id="newer", requested_at=(T0 + timedelta(minutes=1)).timestamp(), git_sha="b" * 40
    )
    decision = safe_point_decision(me, [me], {}, newer_done)
    assert decision.action == "superseded" and decision.other_run_id == "newer"
    older_done = TagRequest(run_id="older", requested_at=(T0 - timedelta(minutes=1)).timestamp())
    assert safe_point_decision(me, [me], {}, older_done).action == "proceed"
    # its own earlier attempt (a retry of the same run) does not count as newer
    mine = TagRequest(run_id="late-old", requested_at=(T0 + timedelta(minutes=5)).timestamp())
    assert safe_point_decision(me, [me], {}, mine).action == "proceed"


def test_superseded_note_round_trip() -> None:
    note = superseded_note("manual__new", "a newer deploy of PR 7")
    assert note.startswith("superseded by manual__new")
    assert is_superseded(run("x", 0, note=note))
    assert not is_superseded(run("x", 0, note="deployed by hand"))
    assert len(superseded_note("r", "x" * 5000)) == 1000


# ------------------------------------------------------------------------------------------ slots

# ------------------------------------------------------------------------------------------ queue view


def test_waiting_for_names_a_test_server_a_slot_and_a_running_deploy() -> None:
    me = run("me", 2)
    testing = [
        TaskState("update_proxy", "success"),
        TaskState("test.run_tests", "scheduled", pool="faye_test_servers"),
    ]
    assert waiting_for(me, testing, [], {}) == "a test server"
    slotting = [TaskState("release_slot", "up_for_reschedule")]
    assert waiting_for(me, slotting, [], {}) == "a slot"
    old = run("old", 0)
    old_tis = tis(still_newest="success", deploy_revision="running")
    mine = [TaskState("still_newest", "up_for_reschedule")]
    assert waiting_for(me, mine, [old, me], {"old": old_tis}) == "a running deploy of PR 7 (old)"
    # between two pauses still_newest runs its next look: the run still waits for what its note says
    noted = run("noted", 2, note="waiting for a slot: slot b is held by PR 3")
    looking = [TaskState("still_newest", "running")]
    assert waiting_for(noted, looking, [], {}) == "a slot: slot b is held by PR 3"
    assert waiting_for(run("q", 3, state="queued"), [], [], {}).startswith("its turn")
    assert waiting_for(me, [TaskState("check_image", "running")], [], {}) == ""


def test_queue_rows_order_by_priority_then_trigger_time() -> None:
    runs = [
        run("draft", 0, pr=1),
        run("rc", 1, pr=2, priority=50),
        run("later", 2, pr=3),
        run("done", 0, state="success"),
    ]
    rows = queue_rows(runs, {"draft": [TaskState("build.build_image", "running")]})
    assert [r.run_id for r in rows] == ["rc", "draft", "later"]
    assert rows[1].step == "build.build_image (running)" and rows[1].pr == 1 and rows[0].priority == 50
    assert rows[0].as_dict()["waiting_for"] == ""


def test_a_test_waiting_for_a_server_is_the_step_while_preview_url_runs_beside_it() -> None:
    # seen in CI: preview_url ran beside the Test group and the row said "preview_url (running)",
    # waiting for "a test server", which named a step that waits for nothing
    tis = [
        TaskState("update_proxy", "success"),
        TaskState("preview_url", "running"),
        TaskState("test.wait_for_preview", "success"),
        TaskState("test.run_tests", "queued", pool="faye_test_servers"),
    ]
    (row,) = queue_rows([run("me", 0)], {"me": tis})
    assert row.step == "test.run_tests (queued)" and row.waiting_for == "a test server"
    # once the test holds a server, the running tasks are the step again
    tis[-1] = TaskState("test.run_tests", "running", pool="faye_test_servers")
    (row,) = queue_rows([run("me", 0)], {"me": tis})
    assert row.step in ("preview_url (running)", "test.run_tests (running)") and row.waiting_for == ""


# ------------------------------------------------------------------------------------------ priority


def test_priority_orders_weights_and_applying_the_policy_twice_changes_nothing() -> None:
    from faye_plugin.policies import weight_for

    draft = weight_for("faye_test", 3, {"priority": 0})
    release = weight_for("faye_test", 3, {"priority": 50})
    assert draft is not None and release is not None and release > draft
    assert weight_for("faye_test", release, {"priority": 50}) == release
    assert weight_for("faye_cleanup", 3, {"priority": 50}) == 3
    assert weight_for("faye_deploy", 3, {"priority": "junk"}) == 3


def test_loading_the_policy_turns_airflows_mutation_hook_on() -> None:
    import airflow.settings

    import faye_plugin.policies  # noqa: F401  (the entry point's import)

    assert airflow.settings.task_instance_mutation_hook.is_noop is False


# ------------------------------------------------------------------------------ teardown and rollback


def test_a_teardown_stops_older_deploys_and_waits_for_one_inside_its_writes() -> None:
    from faye_plugin.queue import plan_stop_deploys

    me = run("teardown", 5, dag_id="faye_teardown")
    early = run("early", 0)  # before its safe point: stopped
    writing = run("writing", 1)  # inside its writes: waited for
    testing = run("testing", 2)  # its writes are done, it tests a preview about to go: stopped
    other = run("other", 3, pr=8)  # another PR: left alone
    states = {
        "early": tis(still_newest=None),
        "writing": tis(still_newest="success", release_slot="success", deploy_revision="running"),
        "testing": tis(still_newest="success", update_proxy="success"),
        "other": tis(still_newest="success", deploy_revision="running"),
    }
    plan = plan_stop_deploys(me, [early, writing, testing, other, me], states)
    assert [r.run_id for r in plan.cancel] == ["early", "testing"]
    assert [r.run_id for r in plan.wait_for] == ["writing"]
    assert plan.superseded_by is None


def test_a_deploy_triggered_after_the_teardown_wins() -> None:
    from faye_plugin.queue import plan_stop_deploys

    me = run("teardown", 5, dag_id="faye_teardown")
    newer = run("reopened", 6)
    plan = plan_stop_deploys(me, [me, newer, run("done", 1, state="success")], {})
    assert plan.superseded_by == newer and plan.cancel == () and plan.wait_for == ()
