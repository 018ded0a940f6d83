"""The preview state (faye_plugin.preview_state): every transition, the encoding, and its invariants
checked after every step of random interleavings of several deploys (hypothesis), including writers that
change the service between another writer's read and write (a lost etag race)."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace

import pytest
from google.cloud import run_v2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faye_plugin import slots
from faye_plugin.exceptions import PreviewStateError, SlotBusyError, SlotTakenError
from faye_plugin.preview_state import (
    CLAIM_GRACE_SECONDS,
    LEGACY_REQUESTS_ANNOTATION,
    PREVIEWS_ANNOTATION,
    Liveness,
    Planned,
    Preview,
    PreviewState,
    StateError,
    _change,
    ms,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
NAME = "projects/p/locations/r/services/hello"
NOW = 1_800_000_000.0


def state(*previews: Preview) -> PreviewState:
    return PreviewState({p.pr: p for p in previews})


def deployed(pr: int, slot: str = "a", **kw: object) -> Preview:
    fields: dict[str, object] = {
        "expires": 10**10,
        "sha": SHA,
        "revision": f"hello-pr-{pr}-0123456",
        "slot": slot,
        "deployed_at": int(NOW - 100),
    }
    fields.update(kw)
    return Preview(pr=pr, **fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ transitions


def test_extend_creates_a_record_and_never_shortens() -> None:
    new = PreviewState().extend(3, 500)
    assert new.get(3) == Preview(pr=3, expires=500)
    assert new.extend(3, 400).get(3).expires == 500  # type: ignore[union-attr]
    pinned = state(deployed(3, expires=900, pinned=True))
    pushed = pinned.extend(3, 1500).get(3)
    assert pushed is not None and (pushed.expires, pushed.slot, pushed.pinned) == (1500, "a", True)
    assert pinned.get(3).expires == 900  # type: ignore[union-attr]  (the input is not changed)


def test_expiry_respects_the_pin() -> None:
    assert Preview(pr=1, expires=100).is_expired(100)
    assert not Preview(pr=1, expires=101).is_expired(100)
    assert not Preview(pr=1, expires=1, pinned=True).is_expired(100)


def test_request_records_the_newest_trigger_time() -> None:
    new = PreviewState().request(4, requested_ms=200, expires=9).request(4, requested_ms=100, expires=9)
    assert new.get(4).requested_ms == 200  # type: ignore[union-attr]
    assert new.newer_request(4, 150) is not None and new.newer_request(4, 200) is None


def test_record_deploy_keeps_the_pin_and_the_later_expiry() -> None:
    before = state(Preview(pr=2, expires=50, pinned=True, slot="a", run_id="r", claimed_ms=5))
    after = before.record_deploy(2, sha=SHA, slot="a", revision="hello-pr-2-0123456", expires=40, now=77)
    record = after.get(2)
    assert record is not None
    assert (record.slot, record.pinned, record.expires, record.deployed_at) == ("a", True, 50, 77)
    assert record.run_id == "r"  # the claim stays live until the run ends


def test_record_deploy_never_drops_another_tags_claim() -> None:
    # The burst bug: the old deployed_record dropped PR 1's claim on slot a, leaving its tag unclaimed.
    held = state(deployed(1, "a"), Preview(pr=2, expires=50))
    with pytest.raises(SlotTakenError, match=r"slot a is held by PR 1 \(sha 0123456\)"):
        held.record_deploy(2, sha=SHA, slot="a", revision="r", expires=40, now=77)
    taking = state(Preview(pr=1, expires=9, taking="a", run_id="r1", claimed_ms=ms(NOW)))
    with pytest.raises(SlotTakenError, match="being taken by PR 1"):
        taking.record_deploy(2, sha=SHA, slot="a", revision="r", expires=40, now=NOW)


def test_claim_refuses_a_live_claim_and_forgets_ended_runs() -> None:
    live = Liveness(ms(NOW), frozenset({"r1"}), ms(NOW - 1))
    st = state(Preview(pr=1, expires=9, slot="a", run_id="r1", claimed_ms=ms(NOW - 10)))
    with pytest.raises(SlotTakenError, match="in flight"):
        st.claim(2, "a", run_id="r2", requested_ms=1, liveness=live, expires=9, evicts=1)
    ended = Liveness(ms(NOW), frozenset({"r2"}), ms(NOW - 1))
    new = st.claim(2, "a", run_id="r2", requested_ms=1, liveness=ended, expires=9, evicts=1)
    assert new.get(1).run_id == "" and new.get(2).taking == "a"  # type: ignore[union-attr]


def test_claiming_a_free_slot_while_holding_another_is_a_move() -> None:
    st = state(deployed(1, "a"))
    new = st.claim(1, "b", run_id="r1", requested_ms=1, liveness=Liveness(ms(NOW)), expires=9)
    assert (new.get(1).slot, new.get(1).taking) == ("a", "b")  # type: ignore[union-attr]
    moved, evicted = new.release(1)
    assert evicted is None and moved.get(1).slot == "b"  # type: ignore[union-attr]


def test_release_without_a_take_over_is_refused() -> None:
    with pytest.raises(SlotTakenError, match="claim was lost"):
        state(deployed(1)).release(1)


def test_undo_keeps_the_served_revision_or_frees_the_slot() -> None:
    st = state(deployed(1, "a", run_id="r", claimed_ms=1))
    kept = st.undo_deploy(1, served="hello-pr-1-old", sha="b" * 40).get(1)
    assert kept is not None and (kept.slot, kept.revision, kept.sha) == ("a", "hello-pr-1-old", "b" * 40)
    freed = st.undo_deploy(1, served=None).get(1)
    assert freed is not None and (freed.slot, freed.revision, freed.run_id, freed.expires) == (
        "",
        "",
        "",
        10**10,
    )
    assert PreviewState().undo_deploy(1, served=None) == PreviewState()


def test_remove_and_pin() -> None:
    st = state(deployed(1), deployed(2, "b"))
    assert st.remove(1).get(1) is None and st.remove(1).get(2) is not None
    assert st.pin(2, True).get(2).pinned and not st.pin(2, True).pin(2, False).get(2).pinned  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        st.pin(9, True)


def test_a_preview_whose_tag_cloud_run_deleted_is_lost_unless_its_deploy_is_in_flight() -> None:
    now = Liveness(ms(NOW))
    st = state(
        deployed(1, "a", pinned=True),  # deleted by Cloud Run at the tag limit (pinned or not)
        deployed(2, "b"),  # still served
        deployed(3, "c", run_id="r3", claimed_ms=ms(NOW - 60)),  # redeploying: claim live, tag not back yet
        Preview(pr=4, expires=9, slot="d", run_id="r4", claimed_ms=ms(NOW - 60)),  # first deploy, claimed
        Preview(pr=5, expires=9, requested_ms=ms(NOW)),  # a request only: it never had a tag
        deployed(6, "", revision=""),  # undone: no slot, no revision, no tag
        deployed(7, "e", run_id="r7", claimed_ms=ms(NOW - CLAIM_GRACE_SECONDS - 1)),  # abandoned claim
        Preview(pr=8, expires=9, slot="f", run_id="r8", claimed_ms=ms(NOW - 60)),  # its run has ended
    )
    served = {"pr-2", "prod-canary"}
    assert [p.pr for p in st.lost(served, now)] == [1, 7]
    ended = Liveness(ms(NOW), active_runs=frozenset({"r3", "r4"}), listed_ms=ms(NOW - 1))
    assert [p.pr for p in st.lost(served, ended)] == [1, 7, 8]

    after, gone = st.forget_lost(served, now)
    assert [p.pr for p in gone] == [1, 7]
    assert sorted(p.pr for p in after) == [2, 3, 4, 5, 6, 8]
    assert after.get(3) == st.get(3) and after.get(4) == st.get(4)  # deploys in flight untouched
    assert st.forget_lost(served, now, among={7})[0].get(1) == st.get(1)  # only the PRs asked for
    # nothing lost: the same state (the caller writes nothing)
    assert after.forget_lost(served, now) == (after, ())
    # a redeploy recorded between the caller's look and the write brings the tag back: kept
    redeployed = st.record_deploy(1, sha=SHA, slot="a", revision="hello-pr-1-0123456", expires=9, now=NOW)
    assert 1 not in [p.pr for p in redeployed.forget_lost(served | {"pr-1"}, now)[1]]


def test_roll_back_points_the_record_at_an_earlier_revision() -> None:
    st = state(deployed(1, "a", pinned=True, requested_ms=5, first_deployed_at=int(NOW - 500)))
    older = "b" * 40
    record = st.roll_back(1, sha=older, revision="hello-pr-1-bbbbbbb", requested_ms=9).get(1)
    assert record is not None
    assert (record.sha, record.revision, record.slot, record.pinned) == (
        older,
        "hello-pr-1-bbbbbbb",
        "a",
        True,
    )
    assert (record.expires, record.requested_ms, record.born) == (10**10, 9, int(NOW - 500))
    assert st.roll_back(1, sha=older, revision="r", requested_ms=1).get(1).requested_ms == 5  # type: ignore[union-attr]
    for nothing in (PreviewState(), state(Preview(pr=1, expires=9)), state(deployed(1, ""))):
        with pytest.raises(PreviewStateError, match="nothing to roll back"):
            nothing.roll_back(1, sha=older, revision="r")


def test_expire_brings_the_expiry_forward_and_unpins() -> None:
    st = state(deployed(1, "a", pinned=True), Preview(pr=2, expires=50))
    record = st.expire(1, NOW).get(1)
    assert record is not None and (record.expires, record.pinned) == (int(NOW), False)
    assert record.is_expired(NOW)
    assert st.expire(2, NOW).get(2).expires == 50  # type: ignore[union-attr]  (never pushed out)
    with pytest.raises(KeyError):
        st.expire(9, NOW)


def test_the_lifetime_counts_from_the_first_deploy() -> None:
    first = PreviewState().record_deploy(1, sha=SHA, slot="a", revision="r1", expires=10**10, now=NOW)
    assert first.get(1).first_deployed_at == 0 and first.get(1).born == int(NOW)  # type: ignore[union-attr]
    later = first.record_deploy(1, sha=SHA, slot="a", revision="r2", expires=10**10, now=NOW + 3600)
    record = later.get(1)
    assert record is not None and (record.deployed_at, record.born) == (int(NOW) + 3600, int(NOW))
    again = later.record_deploy(1, sha=SHA, slot="a", revision="r3", expires=10**10, now=NOW + 7200)
    assert again.get(1).born == int(NOW)  # type: ignore[union-attr]
    # not expired by its expiry; past a 2-hour lifetime however often it was redeployed; a pin keeps it
    assert not record.is_expired(NOW + 7200) and not record.is_expired(NOW + 7199, 2)
    assert record.is_expired(NOW + 7200, 2)
    assert not replace(record, pinned=True).is_expired(NOW + 7200, 2)
    assert not Preview(pr=3, expires=10**10).is_expired(NOW, 1)  # never deployed: no lifetime yet


# ------------------------------------------------------------------------------------------ encoding


def test_round_trip_through_the_service_and_the_wire() -> None:
    st = state(
        deployed(1, "a", pinned=True, requested_ms=ms(NOW)),
        deployed(12, "", revision="hello-pr-12-0123456-r2"),
        deployed(13, "b", revision="someone-elses-name", run_id="manual__x", claimed_ms=5, taking="c"),
        Preview(pr=14, expires=5),
        deployed(15, "c", first_deployed_at=int(NOW - 86_400)),
    )
    service = run_v2.Service(name=NAME, annotations={LEGACY_REQUESTS_ANNOTATION: "{}", "other": "kept"})
    st.write(service)
    assert LEGACY_REQUESTS_ANNOTATION not in service.annotations and service.annotations["other"] == "kept"
    assert PreviewState.read(service) == st
    again = run_v2.Service.from_json(run_v2.Service.to_json(service))
    assert PreviewState.read(again) == st
    body = json.loads(service.annotations[PREVIEWS_ANNOTATION])["p"]
    assert body["1"][1] == "=" and body["12"][1] == "=-r2" and len(body["1"][0]) == 28
    assert body["14"][:3] == ["", "", ""]
    assert len(body["1"]) < 11 and body["15"][10] == 86_400 - 100 + 1  # first deploy: only when not the last
    PreviewState().write(service)
    assert PREVIEWS_ANNOTATION not in service.annotations
    assert PreviewState.read(None) == PreviewState()


def test_the_version_1_annotations_are_still_read() -> None:
    previews = {
        "pr-3": {"expires": 5, "slot": "a", "sha": "ab", "revision": "hello-pr-3-ab", "deployed_at": 4}
    }
    requests = {"pr-3": {"run_id": "r", "requested_at": 12.5, "slot": "a", "claimed_at": 13.0}}
    service = run_v2.Service(
        name=NAME,
        annotations={
            PREVIEWS_ANNOTATION: json.dumps(previews),
            LEGACY_REQUESTS_ANNOTATION: json.dumps(requests),
        },
    )
    record = PreviewState.read(service).get(3)
    assert record == Preview(
        pr=3, expires=5, sha="ab", revision="hello-pr-3-ab", slot="a", deployed_at=4, requested_ms=12_500
    )


@pytest.mark.parametrize(
    "raw", ["not json", "[1]", '{"pr-1": 3}', '{"pr-1": {"slot": "a"}}', '{"v": 2, "p": {"x": [1]}}']
)
def test_a_malformed_annotation_is_an_error(raw: str) -> None:
    with pytest.raises(StateError, match=PREVIEWS_ANNOTATION):
        PreviewState.read(run_v2.Service(name=NAME, annotations={PREVIEWS_ANNOTATION: raw}))


def test_two_thousand_previews_stay_under_the_annotation_limit() -> None:
    limit = 256 * 1024  # Kubernetes' limit on all of an object's annotations together
    previews = [
        Preview(
            pr=100_000 + pr,
            expires=int(NOW) + 720 * 3600,
            sha=f"{pr:07x}" + "f" * 33,
            revision=f"hello-pr-{100_000 + pr}-{pr:07x}",
            slot=f"slot-{pr:04d}",
            deployed_at=int(NOW),
            requested_ms=ms(NOW) + pr,
            pinned=pr % 10 == 0,
        )
        for pr in range(2000)
    ]
    # half were redeployed since their first deploy (their lifetime counts from it)
    previews[::2] = [replace(p, first_deployed_at=int(NOW) - 86_400 * 20) for p in previews[::2]]
    # a few deploys in flight carry their run id, claim time and take-over
    previews[:10] = [
        replace(
            p, run_id=f"hello-pr-{p.pr}-0123456-20261202T003432.123Z", claimed_ms=ms(NOW), taking="slot-x"
        )
        for p in previews[:10]
    ]
    st = PreviewState({p.pr: p for p in previews})
    service = run_v2.Service(name=NAME)
    st.write(service)
    size = len(service.annotations[PREVIEWS_ANNOTATION].encode())
    print(f"2,000 previews encode to {size} bytes ({size / 1024:.1f} KiB)")
    assert size < limit * 0.8, size
    assert PreviewState.read(service) == st


def test_change_writes_annotations_only_or_the_whole_service() -> None:
    service = run_v2.Service(name=NAME)
    only = _change(lambda st, cur: Planned(st.extend(1, 5)))(service)
    assert only is not None and only[1] == ["annotations"]
    assert PreviewState.read(only[0]).get(1) == Preview(pr=1, expires=5)
    whole = _change(lambda st, cur: Planned(st, run_v2.Service(name=NAME), update_mask=()))(None)
    assert whole is not None and whole[1] is None
    assert _change(lambda st, cur: Planned(st))(None) is None  # no service to write the state on
    assert _change(lambda st, cur: None)(service) is None


# ------------------------------------------------------------------------------- interleavings (hypothesis)

SLOTS = ("a", "b")


@dataclass
class World:
    """The peers as the deploys see them: the service (state + served tags, one etag), routes, runs."""

    state: PreviewState = field(default_factory=PreviewState)
    served: frozenset[str] = frozenset()
    version: int = 0
    routes: dict[str, int] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    clock: int = 0
    conflicts: int = 0
    deleted: frozenset[str] = frozenset()  # tags Cloud Run deleted on its own (the tag limit)

    def now_ms(self) -> int:
        self.clock += 1
        return ms(NOW) + self.clock

    def commit(self, new: PreviewState, served: frozenset[str]) -> None:
        for pr, old in self.state.previews.items():
            after = new.get(pr)
            assert after is None or after.expires >= old.expires, f"PR {pr}'s expiry shortened"
        self.state, self.served, self.version = new, served, self.version + 1
        self.deleted -= served


Write = Callable[[PreviewState, frozenset[str]], tuple[PreviewState, frozenset[str]] | None]


def write(world: World, change: Write) -> Generator[None, None, None]:
    """One etag-guarded read-modify-write: another writer may commit between the read and the write."""
    while True:
        version, current, served = world.version, world.state, world.served
        yield
        planned = change(current, served)
        if world.version != version:
            world.conflicts += 1  # the write's etag is stale: read again
            continue
        if planned is not None:
            world.commit(*planned)
        return


def deploy(world: World, pr: int, policy: str, outcome: dict[int, str]) -> Generator[None, None, None]:
    """One faye_deploy run of PR ``pr``: triggered, safe point + claim, release_slot, deploy, update_proxy."""
    run, tag = f"run-{pr}", f"pr-{pr}"
    yield
    world.active.add(run)
    requested = world.now_ms()
    while True:  # still_newest: list the runs, then claim on a fresh read
        listed, listed_ms = frozenset(world.active), world.now_ms()
        yield
        decided: list[slots.SlotDecision] = []

        def claim(
            current: PreviewState,
            served: frozenset[str],
            listed: frozenset[str] = listed,
            listed_ms: int = listed_ms,
            decided: list[slots.SlotDecision] = decided,
        ) -> tuple[PreviewState, frozenset[str]] | None:
            new, decision = slots.claim(
                current,
                pr=pr,
                run_id=run,
                requested_ms=requested,
                requested_slot=None,
                service="hello",
                service_slots=SLOTS,
                routes=[Route(s, "hello", p) for s, p in world.routes.items()],
                policy=policy,
                liveness=Liveness(world.now_ms(), listed, listed_ms),
                expires=10**10,
            )
            decided.append(decision)
            return None if new is None else (new, served)

        try:
            yield from write(world, claim)
        except SlotBusyError as exc:
            outcome[pr] = f"failed: {exc}"
            world.active.discard(run)
            return
        if decided[-1].slot is not None:
            break
        yield  # deferred: look again later
    slot = str(decided[-1].slot)
    # release_slot: the slot's route first, then (one write) the holder's tag and record and the hand-over
    me = world.state.get(pr)
    if world.routes.get(slot, pr) != pr:
        del world.routes[slot]
        yield
    if me is not None and me.taking == slot:

        def hand_over(current: PreviewState, served: frozenset[str]) -> tuple[PreviewState, frozenset[str]]:
            new, evicted = current.release(pr)
            return new, served - {evicted.tag} if evicted is not None else served

        yield from write(world, hand_over)
    # deploy_revision: the tag and the record in one write; a refusal is undone and fails the run
    try:

        def record(current: PreviewState, served: frozenset[str]) -> tuple[PreviewState, frozenset[str]]:
            new = current.record_deploy(
                pr, sha=SHA, slot=slot, revision=f"hello-{tag}-0123456", expires=5, now=NOW, run_id=run
            )
            return new, served | {tag}

        yield from write(world, record)
    except SlotTakenError as exc:
        yield from write(
            world, lambda current, served: (current.undo_deploy(pr, served=None), served - {tag})
        )
        outcome[pr] = f"failed: {exc}"
        world.active.discard(run)
        return
    yield
    world.routes[slot] = pr  # update_proxy
    yield
    outcome[pr] = f"success in slot {slot}"
    world.active.discard(run)


def unguarded_deploy(world: World, pr: int, outcome: dict[int, str]) -> Generator[None, None, None]:
    """A faye_deploy without its safe point (``queue_steps=False``): no claim, so only the guards of
    release_slot and record_deploy stand between it and the other deploys' claims."""
    run, tag = f"run-{pr}", f"pr-{pr}"
    yield
    world.active.add(run)
    found = slots.holders(world.state, [], service="hello", liveness=Liveness(world.now_ms()))
    decision = slots.choose_slot(
        service="hello",
        pr=pr,
        requested_slot=None,
        service_slots=SLOTS,
        holders=found,
        policy="wait",
        now=NOW,
    )
    yield
    slot = decision.slot or SLOTS[pr % 2]
    holder = world.state.holder(slot, besides=pr)
    live = Liveness(world.now_ms()).live
    if holder is not None and (holder.pinned or live(holder)):
        outcome[pr] = f"failed: slot {slot} is held by PR {holder.pr}"
        world.active.discard(run)
        return
    if holder is not None:
        gone = holder
        if world.routes.get(slot) == gone.pr:
            del world.routes[slot]
        yield

        def teardown(
            current: PreviewState, served: frozenset[str]
        ) -> tuple[PreviewState, frozenset[str]] | None:
            again = current.get(gone.pr)
            if again is not None and (again.pinned or live(again)):
                return None  # release_slot's only_if: a holder that came back to life is kept
            return current.remove(gone.pr), served - {gone.tag}

        yield from write(world, teardown)
    try:

        def record(current: PreviewState, served: frozenset[str]) -> tuple[PreviewState, frozenset[str]]:
            new = current.record_deploy(
                pr, sha=SHA, slot=slot, revision=f"hello-{tag}-0123456", expires=5, now=NOW, run_id=run
            )
            return new, served | {tag}

        yield from write(world, record)
    except SlotTakenError as exc:
        outcome[pr] = f"failed: {exc}"
        world.active.discard(run)
        return
    yield
    world.routes[slot] = pr  # update_proxy
    yield
    outcome[pr] = f"success in slot {slot}"
    world.active.discard(run)


def extender(world: World, pr: int, expires: int) -> Generator[None, None, None]:
    """A conflicting writer: extend_expiry of some PR (another run's first write)."""
    yield from write(world, lambda current, served: (current.extend(pr, expires), served))


def tag_limit(world: World) -> Generator[None, None, None]:
    """Cloud Run at its tag limit: another service's write makes it delete this service's oldest
    traffic-less tag (any preview's), with no etag of faye's involved."""
    yield
    if world.served:
        tag = min(world.served, key=lambda t: int(t.removeprefix("pr-")))
        world.served -= {tag}
        world.deleted |= {tag}
        world.version += 1


def repair(world: World) -> Generator[None, None, None]:
    """faye_cleanup's repair_lost: list the active runs, read, remove the lost previews' routes, then
    forget them in one write decided again on the state it writes over."""
    yield
    listed, listed_ms = frozenset(world.active), world.now_ms()
    yield
    first = world.state.lost(world.served, Liveness(world.now_ms(), listed, listed_ms))
    for p in first:
        if world.routes.get(p.slot) == p.pr:
            del world.routes[p.slot]
            yield

    def forget(current: PreviewState, served: frozenset[str]) -> tuple[PreviewState, frozenset[str]] | None:
        new, gone = current.forget_lost(
            served, Liveness(world.now_ms(), listed, listed_ms), among={p.pr for p in first}
        )
        for p in gone:
            assert p.run_id not in world.active, f"the repair dropped {p}, a deploy in flight"
        return (new, served) if gone else None

    yield from write(world, forget)


def tearer(world: World, pr: int) -> Generator[None, None, None]:
    """faye_teardown of PR ``pr``: its routes first, then its tag and record in one write."""
    yield
    for slot in [s for s, p in world.routes.items() if p == pr]:
        del world.routes[slot]
        yield
    yield from write(world, lambda current, served: (current.remove(pr), served - {f"pr-{pr}"}))


def roller(world: World, pr: int) -> Generator[None, None, None]:
    """faye_rollback of PR ``pr``: record and tag move to an earlier revision in one write (or nothing)."""
    yield

    def roll(current: PreviewState, served: frozenset[str]) -> tuple[PreviewState, frozenset[str]] | None:
        record = current.get(pr)
        if record is None or not record.slot or not record.revision or f"pr-{pr}" not in served:
            return None  # RollbackError: nothing to roll back
        return current.roll_back(pr, sha="b" * 40, revision=f"hello-pr-{pr}-old", requested_ms=1), served

    yield from write(world, roll)


def check_invariants(world: World) -> None:
    live = Liveness(world.now_ms(), frozenset(world.active), 0)
    claims = [p for p in world.state if p.slot]
    held = [p.slot for p in claims]
    assert len(held) == len(set(held)), f"two claims on one slot: {world.state}"
    takers = [p.taking for p in world.state if p.taking and live.live(p)]
    assert len(takers) == len(set(takers)), f"two live take-overs of one slot: {world.state}"
    for p in claims:
        lost = p.tag in world.deleted  # broken by Cloud Run itself until the repair
        assert p.tag in world.served or (p.run_id and p.claimed_ms) or lost, f"claim {p} names no served tag"
    for tag in world.served:
        record = world.state.by_tag(tag)
        assert record is not None and record.slot, f"Cloud Run tag {tag} has no slot claim"
    for slot, pr in world.routes.items():
        record = world.state.get(pr)
        assert record is not None and record.slot == slot, f"slot {slot} routes to PR {pr}, unclaimed"


@dataclass(frozen=True)
class Route:
    slot: str
    service: str
    pr: int
    sha: str = SHA


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(["evict-oldest", "wait", "fail"]),
    prs=st.integers(min_value=2, max_value=5),
    held=st.integers(min_value=0, max_value=2),
    schedule=st.lists(st.integers(min_value=0, max_value=6), max_size=120),
    extends=st.lists(st.tuples(st.integers(1, 8), st.integers(0, 10**10)), max_size=6),
    unguarded=st.sets(st.integers(1, 5), max_size=2),
    deletions=st.integers(0, 3),
    repairs=st.integers(0, 2),
    teardowns=st.lists(st.sampled_from([100, 101]), max_size=2),
    rollbacks=st.lists(st.sampled_from([100, 101]), max_size=2),
)
def test_random_interleavings_of_deploys_keep_the_invariants(  # noqa: PLR0917 (hypothesis passes them)
    policy: str,
    prs: int,
    held: int,
    schedule: list[int],
    extends: list[tuple[int, int]],
    unguarded: set[int],
    deletions: int,
    repairs: int,
    teardowns: list[int],
    rollbacks: list[int],
) -> None:
    world = World()
    for pr, slot in zip(range(100, 100 + held), SLOTS, strict=False):  # previews deployed earlier
        world.state = world.state._with(deployed(pr, slot))
        world.served |= {f"pr-{pr}"}
        world.routes[slot] = pr
    outcome: dict[int, str] = {}
    actors: list[Generator[None, None, None]] = [
        unguarded_deploy(world, pr, outcome) if pr in unguarded else deploy(world, pr, policy, outcome)
        for pr in range(1, prs + 1)
    ]
    extra = [extender(world, pr, expires) for pr, expires in extends]
    extra += [tag_limit(world) for _ in range(deletions)] + [repair(world) for _ in range(repairs)]
    # teardowns and rollbacks of the previews deployed earlier (their own deploys are stopped first,
    # so none of the deploys here is of their PR)
    extra += [tearer(world, pr) for pr in teardowns] + [roller(world, pr) for pr in rollbacks]
    for pick in schedule:
        pool = actors + extra
        if not pool:
            break
        actor = pool[pick % len(pool)]
        try:
            next(actor)
        except StopIteration:
            (actors if actor in actors else extra).remove(actor)
        check_invariants(world)
    for _ in range(400):  # let every run finish (or, under `wait`, wait for a slot nobody frees)
        for actor in list(actors + extra):
            try:
                next(actor)
            except StopIteration:
                (actors if actor in actors else extra).remove(actor)
            check_invariants(world)
        if not actors and not extra:
            break
    if not actors:  # every run ended: one more repair leaves no claim on a tag Cloud Run deleted
        for _ in repair(world):
            pass
        check_invariants(world)
        assert not [p for p in world.state if p.slot and p.tag not in world.served], world.state
    waiting = set(range(1, prs + 1)) - set(outcome)
    if policy != "wait":
        assert not waiting, f"runs never ended under {policy}: {waiting}"
    for pr, result in outcome.items():
        assert result.startswith("success") or ("slot" in result and "PR" in result), (pr, result)
