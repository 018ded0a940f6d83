"""The slot rules (faye_plugin.slots): holders, choosing, claiming at the safe point, what a run waits for."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from faye_plugin.exceptions import SlotBusyError, SlotTakenError
from faye_plugin.preview_state import Liveness, Preview, PreviewState, ms
from faye_plugin.slots import Holder, choose_slot, claim, holders, slot_to_wait_for

SHA = "f" * 40


@dataclass(frozen=True)
class Route:  # the shape of ProxyHook's SlotRoute
    slot: str
    service: str
    pr: int
    sha: str = SHA


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


def state(*previews: Preview) -> PreviewState:
    return PreviewState({p.pr: p for p in previews})


def deployed(pr: int, slot: str, at: float, **kw: object) -> Preview:
    return Preview(
        pr=pr,
        expires=10**10,
        sha=SHA,
        revision=f"hello-pr-{pr}-fffffff",
        slot=slot,
        deployed_at=int(at),
        **kw,
    )  # type: ignore[arg-type]


def test_holders_merge_claims_and_routes() -> None:
    st = state(
        deployed(1, "a", 100),
        deployed(2, "b", 50),  # holds b, its route was never written
    )
    routes = [Route("a", "hello", 1), Route("c", "hello", 9), Route("d", "other", 4)]
    found = holders(st, routes, service="hello", liveness=Liveness(now_ms=ms(NOW)))
    assert set(found) == {"a", "b", "c"}
    assert found["a"].pr == 1 and found["a"].deployed_at == 100
    assert found["b"].pr == 2
    assert found["c"].pr == 9 and found["c"].deployed_at == 0.0


def test_a_live_claim_is_a_mid_deploy_holder_until_its_run_ends() -> None:
    claimed = Preview(pr=1, expires=10**10, slot="c", run_id="run-1", claimed_ms=ms(NOW - 20))
    st = state(claimed)
    live = holders(st, [], service="hello", liveness=Liveness(ms(NOW), frozenset({"run-1"}), ms(NOW - 1)))
    assert live["c"].deployed_at is None and live["c"].claimed_at == NOW - 20
    # its run is no longer active in a list taken after the claim: the claim is not live any more
    ended = holders(st, [], service="hello", liveness=Liveness(ms(NOW), frozenset(), ms(NOW - 1)))
    assert ended["c"].deployed_at == 0.0
    # a claim made after the runs were listed is live whatever the list says (the burst bug's window)
    late = holders(st, [], service="hello", liveness=Liveness(ms(NOW), frozenset(), ms(NOW - 60)))
    assert late["c"].deployed_at is None
    # without the list, a claim is live for the grace period only
    assert holders(st, [], service="hello", liveness=Liveness(ms(NOW)))["c"].deployed_at is None
    stale = holders(st, [], service="hello", liveness=Liveness(ms(NOW + 7200)))
    assert stale["c"].deployed_at == 0.0


def test_a_live_take_over_holds_the_slot_for_the_taker() -> None:
    st = state(
        deployed(1, "a", 100),
        Preview(pr=2, expires=10**10, taking="a", run_id="run-2", claimed_ms=ms(NOW - 5)),
    )
    found = holders(st, [Route("a", "hello", 1)], service="hello", liveness=Liveness(ms(NOW)))
    assert found["a"].pr == 2 and found["a"].deployed_at is None


def test_slot_to_wait_for_is_the_least_recently_used_unpinned() -> None:
    found = {
        "a": Holder(pr=1, deployed_at=50.0, pinned=True),
        "b": Holder(pr=2, deployed_at=300.0),
        "c": Holder(pr=3, deployed_at=None, claimed_at=200.0),  # mid-deploy, claimed at 200
    }
    assert slot_to_wait_for(found, ("a", "b", "c")) == "c"
    assert slot_to_wait_for({"a": found["a"]}, ("a",)) is None


def safe_point(
    st: PreviewState,
    pr: int,
    policy: str = "evict-oldest",
    *,
    runs: frozenset[str] = frozenset(),
    slot: str | None = None,
):
    return claim(
        st,
        pr=pr,
        run_id=f"run-{pr}",
        requested_ms=ms(NOW),
        requested_slot=slot,
        service="hello",
        service_slots=SLOTS,
        routes=[],
        policy=policy,
        liveness=Liveness(ms(NOW), runs | {f"run-{pr}"}, ms(NOW - 1)),
        expires=10**10,
    )


def test_the_claim_takes_a_free_slot_at_once_and_a_held_one_by_take_over() -> None:
    new, decision = safe_point(state(deployed(1, "a", NOW - 50)), 3)
    assert new is not None and decision.slot == "b" and new.get(3).slot == "b"
    full = state(deployed(1, "a", NOW - 50), deployed(2, "b", NOW - 100))
    new, decision = safe_point(full, 3)
    assert new is not None and decision.evict is not None and decision.evict.pr == 2
    taker = new.get(3)
    assert (taker.slot, taker.taking) == ("", "b") and new.get(2).slot == "b"
    released, evicted = new.release(3)
    assert evicted is not None and evicted.pr == 2 and released.get(2) is None
    assert released.get(3).slot == "b" and released.get(3).taking == ""


def test_a_second_pr_waits_while_a_live_claim_holds_or_takes_the_slot() -> None:
    # the burst: PR 3 and PR 4 both want the last evictable slot; PR 3 claimed it first
    full = state(deployed(1, "a", NOW - 50, pinned=True), deployed(2, "b", NOW - 100))
    after3, _ = safe_point(full, 3)
    assert after3 is not None
    waited, decision = safe_point(after3, 4, runs=frozenset({"run-3"}))
    assert waited is None and decision.waits and "PR 3" in decision.reason
    with pytest.raises(
        SlotBusyError, match=r"^no free slot for hello \(PR 4 asked; slot policy fail\): a: PR 1"
    ):
        safe_point(after3, 4, "fail", runs=frozenset({"run-3"}))
    # the slot chosen when the run started, taken since, is named first
    with pytest.raises(SlotBusyError, match=r"^slot b was taken by PR 3 \(sha \?, deploying\); no free slot"):
        claim(
            after3,
            pr=4,
            run_id="run-4",
            requested_ms=ms(NOW),
            requested_slot=None,
            service="hello",
            service_slots=SLOTS,
            routes=[],
            policy="fail",
            liveness=Liveness(ms(NOW), frozenset({"run-3", "run-4"}), ms(NOW - 1)),
            expires=10**10,
            hint="b",
        )


def test_wait_policy_never_evicts_and_fail_names_holders() -> None:
    full = state(deployed(1, "a", NOW - 50), deployed(2, "b", NOW - 100))
    assert safe_point(full, 3, "wait")[0] is None
    with pytest.raises(SlotBusyError, match=r"a: PR 1 .*b: PR 2"):
        safe_point(full, 3, "fail")
    # an explicit slot is taken from a finished holder whatever the policy
    new, decision = safe_point(full, 3, "wait", slot="a")
    assert new is not None and decision.evict is not None and decision.evict.pr == 1


def test_the_guarded_claim_refuses_what_the_decision_did_not_see() -> None:
    full = state(deployed(1, "a", NOW - 50))
    live = Liveness(ms(NOW))
    with pytest.raises(SlotTakenError, match="held by PR 1"):
        full.claim(3, "a", run_id="r3", requested_ms=1, liveness=live, expires=1, evicts=None)
    pinned = state(deployed(1, "a", NOW - 50, pinned=True))
    with pytest.raises(SlotTakenError, match="pinned"):
        pinned.claim(3, "a", run_id="r3", requested_ms=1, liveness=live, expires=1, evicts=1)
