"""The queue's pure rules: superseding, safe points, slot choice, what a run waits for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from faye_plugin.exceptions import SlotBusyError
from faye_plugin.queue import (
    Holder,
    RunInfo,
    TagRequest,
    TaskState,
    choose_slot,
    in_critical_section,
    is_superseded,
    past_safe_point,
    plan_supersede,
    queue_rows,
    safe_point_decision,
    superseded_note,
    waiting_for,
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

SLOTS = ("a", "b")
NOW = 1_800_000_000.0


def choose(pr: int, holders: dict[str, Holder], policy: str = "evict-oldest", slot: str | None = None):
    return choose_slot(
        service="hello",
        pr=pr,
        requested_slot=slot,
        service_slots=SLOTS,
        holders=holders,
        policy=policy,
        now=NOW,
    )


def test_a_pr_keeps_the_slot_it_holds() -> None:
    holders = {"a": Holder(pr=1, deployed_at=NOW - 50), "b": Holder(pr=2, deployed_at=NOW - 100)}
    decision = choose(2, holders)
    assert decision.slot == "b" and decision.evict is None


def test_a_free_slot_is_taken_before_anything_is_evicted() -> None:
    decision = choose(3, {"a": Holder(pr=1, deployed_at=NOW - 50)})
    assert decision.slot == "b" and decision.evict is None


def test_evict_oldest_takes_the_least_recently_deployed_unpinned_preview() -> None:
    holders = {
        "a": Holder(pr=1, deployed_at=NOW - 500, pinned=True),
        "b": Holder(pr=2, deployed_at=NOW - 100),
    }
    decision = choose(3, holders)
    assert decision.slot == "b" and decision.evict == holders["b"]
    holders["a"] = Holder(pr=1, deployed_at=NOW - 500)
    assert choose(3, holders).slot == "a"


def test_a_claim_still_deploying_is_not_evicted_until_abandoned() -> None:
    holders = {"a": Holder(pr=1, claimed_at=NOW - 5), "b": Holder(pr=2, claimed_at=NOW - 10)}
    decision = choose(3, holders)
    assert decision.waits and "deploying" in decision.reason
    holders["b"] = Holder(pr=2, claimed_at=NOW - 7200)
    assert choose(3, holders).evict == holders["b"]


def test_wait_policy_waits_and_fail_policy_names_slots_and_holders() -> None:
    holders = {
        "a": Holder(pr=1, sha="1" * 40, deployed_at=NOW - 5),
        "b": Holder(pr=2, sha="2" * 40, deployed_at=NOW),
    }
    assert choose(3, holders, "wait").waits
    with pytest.raises(SlotBusyError) as err:
        choose(3, holders, "fail")
    message = str(err.value)
    assert "a: PR 1 (sha 1111111)" in message and "b: PR 2 (sha 2222222)" in message and "PR 3" in message


def test_a_requested_slot_is_taken_from_its_holder_unless_pinned() -> None:
    holders = {"a": Holder(pr=1, deployed_at=NOW - 5)}
    assert choose(3, holders, "fail", slot="a").evict == holders["a"]
    assert choose(1, holders, "fail", slot="a").evict is None
    with pytest.raises(SlotBusyError, match="slot a is held"):
        choose(3, {"a": Holder(pr=1, deployed_at=NOW, pinned=True)}, "fail", slot="a")
    with pytest.raises(ValueError, match="unknown slot 'z'"):
        choose(3, {}, slot="z")


def test_holders_of_slots_outside_the_catalogue_are_ignored() -> None:
    decision = choose(3, {"gone": Holder(pr=9, deployed_at=NOW)})
    assert decision.slot == "a"


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


# ------------------------------------------------------------------------------------------ priority, records


def test_priority_orders_weights_and_applying_the_policy_twice_changes_nothing() -> None:
    from faye_plugin.policies import weight_for

    draft = weight_for("faye_test", 3, {"priority": 0})
    release = weight_for("faye_test", 3, {"priority": 50})
    assert draft is not None and release is not None and release > draft
    assert weight_for("faye_test", release, {"priority": 50}) == release
    assert weight_for("faye_cleanup", 3, {"priority": 50}) == 3
    assert weight_for("faye_deploy", 3, {"priority": "junk"}) == 3


def test_request_records_round_trip_and_keep_other_tags() -> None:
    from faye_plugin.operators.queue import read_requests, write_request

    annotations: dict[str, str] = {"other": "kept"}
    write_request(annotations, "pr-1", TagRequest("run-a", 100.0, "a" * 40))
    write_request(annotations, "pr-2", TagRequest("run-b", 200.0, None))
    write_request(annotations, "pr-1", TagRequest("run-c", 300.0, "c" * 40))
    records = read_requests(annotations)
    assert records["pr-1"] == TagRequest("run-c", 300.0, "c" * 40)
    assert records["pr-2"].run_id == "run-b" and annotations["other"] == "kept"
    assert read_requests({"faye.dev/requests": "not json"}) == {}


# ------------------------------------------------------------------------------ claims at the safe point


def record(
    tag: str, pr: int, slot: str, *, revision: str = "r", deployed_at: int = 100, pinned: bool = False
):
    from faye_plugin.hooks.cloud_run_model import PreviewRecord

    return PreviewRecord(
        tag, pr, "f" * 40, slot, revision, expires=10**10, pinned=pinned, deployed_at=deployed_at
    )


def test_a_fresh_claim_is_mid_deploy_and_blocks_the_slot() -> None:
    from faye_plugin.queue import claim_decision, claim_holders

    records = [record("pr-1", 1, "c", revision="", deployed_at=0)]
    requests = {"pr-1": TagRequest("run-1", NOW - 20, "f" * 40, "c", NOW - 10)}
    holders = claim_holders(pr=2, records=records, requests=requests, service="hello", now=NOW)
    assert holders["c"].deployed_at is None and holders["c"].pr == 1
    for policy in ("evict-oldest", "wait"):
        decision = claim_decision(
            service="hello", pr=2, slot="c", explicit=False, holders=holders, policy=policy, now=NOW
        )
        assert decision.waits and "PR 1" in decision.reason
    with pytest.raises(SlotBusyError, match=r"slot c was taken by PR 1 .*c: PR 1"):
        claim_decision(
            service="hello", pr=2, slot="c", explicit=False, holders=holders, policy="fail", now=NOW
        )


def test_a_finished_deploy_is_evictable_only_under_evict_oldest_or_an_explicit_slot() -> None:
    from faye_plugin.queue import claim_decision, claim_holders

    records = [record("pr-1", 1, "c", deployed_at=int(NOW - 5))]
    requests = {"pr-1": TagRequest("run-1", NOW - 30, "f" * 40, "c", NOW - 20)}
    holders = claim_holders(pr=2, records=records, requests=requests, service="hello", now=NOW)
    assert holders["c"].deployed_at == NOW - 5

    def decide(policy: str, explicit: bool = False):
        return claim_decision(
            service="hello", pr=2, slot="c", explicit=explicit, holders=holders, policy=policy, now=NOW
        )

    assert decide("evict-oldest").evict == holders["c"]
    assert decide("wait").waits
    assert decide("wait", explicit=True).evict == holders["c"]
    # own slot and a free slot are claimed without eviction
    assert (
        claim_decision(
            service="hello", pr=1, slot="c", explicit=False, holders=holders, policy="fail", now=NOW
        ).evict
        is None
    )
    assert (
        claim_decision(
            service="hello", pr=2, slot="a", explicit=False, holders=holders, policy="fail", now=NOW
        ).slot
        == "a"
    )


def test_routes_without_records_hold_their_slot_and_own_holdings_are_ignored() -> None:
    from dataclasses import dataclass

    from faye_plugin.queue import claim_holders

    @dataclass
    class FakeRoute:  # the shape of ProxyHook's SlotRoute
        slot: str
        service: str
        pr: int
        sha: str

    routes = [
        FakeRoute("a", "hello", 5, "5" * 40),
        FakeRoute("b", "world", 6, ""),
        FakeRoute("c", "hello", 2, ""),
    ]
    holders = claim_holders(
        pr=2, records=[record("pr-2", 2, "c")], requests={}, routes=routes, service="hello", now=NOW
    )
    assert set(holders) == {"a"} and holders["a"].pr == 5


def test_a_claim_stands_while_its_run_is_writing_and_falls_when_the_run_is_gone() -> None:
    from faye_plugin.queue import claim_holders

    # deploy_revision already recorded deployed_at, but update_proxy has not run: still writing
    records = [record("pr-1", 1, "c", deployed_at=int(NOW - 1))]
    requests = {"pr-1": TagRequest("run-1", NOW - 30, "f" * 40, "c", NOW - 20)}
    writing = claim_holders(
        pr=2, records=records, requests=requests, service="hello", now=NOW, writing_runs={"run-1"}
    )
    assert writing["c"].deployed_at is None
    done = claim_holders(
        pr=2, records=records, requests=requests, service="hello", now=NOW, writing_runs=set()
    )
    assert done["c"].deployed_at == NOW - 1


def test_loading_the_policy_turns_airflows_mutation_hook_on() -> None:
    import airflow.settings

    import faye_plugin.policies  # noqa: F401  (the entry point's import)

    assert airflow.settings.task_instance_mutation_hook.is_noop is False
