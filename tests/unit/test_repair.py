"""faye's self-repair decision (pure): each inconsistency gets its repair, a deploy in flight gets none."""

from __future__ import annotations

import dataclasses

from faye_plugin.hooks.proxy import SlotRoute
from faye_plugin.hooks.test_servers import Lease
from faye_plugin.preview_state import CLAIM_GRACE_SECONDS, Liveness, Preview, PreviewState
from faye_plugin.repair import (
    FORGET_LOST,
    LEFT,
    POINT_ROUTE,
    RELEASE_LEASE,
    REMOVE_ROUTE,
    REMOVE_TAG,
    Repair,
    ServiceView,
    decide,
    decide_lease,
)

SHA1, SHA2 = "1" * 40, "2" * 40
URL1 = "http://pr-1---hello.run.localhost:28704"
URL2 = "http://pr-2---hello.run.localhost:28704"
NOW_MS = 1_800_000_000_000
SETTLED = Liveness(now_ms=NOW_MS, active_runs=frozenset(), listed_ms=NOW_MS - 1000)


def record(pr: int, slot: str, sha: str, **kw: object) -> Preview:
    return Preview(
        pr=pr, expires=2_000_000_000, sha=sha, revision=f"hello-pr-{pr}-{sha[:7]}", slot=slot, **kw
    )  # type: ignore[arg-type]


def route(slot: str, pr: int, sha: str, url: str) -> SlotRoute:
    return SlotRoute(
        slot, f"{slot}.preview.localhost", url, "hello", pr, sha, f"hello-pr-{pr}-{sha[:7]}", f"pr-{pr}"
    )


def consistent() -> tuple[ServiceView, list[SlotRoute]]:
    view = ServiceView(
        "hello",
        ("a", "b"),
        exists=True,
        served=frozenset({"pr-1", "pr-2"}),
        revisions={"pr-1": "hello-pr-1-1111111", "pr-2": "hello-pr-2-2222222"},
        urls={"pr-1": URL1, "pr-2": URL2},
        state=PreviewState({1: record(1, "a", SHA1), 2: record(2, "b", SHA2)}),
    )
    return view, [route("a", 1, SHA1, URL1), route("b", 2, SHA2, URL2)]


def actions(repairs: list[Repair]) -> list[tuple[str, int | None, str]]:
    return sorted((r.action, r.pr, r.slot) for r in repairs)


def test_a_consistent_service_needs_no_repair() -> None:
    view, routes = consistent()
    assert decide(view, routes, SETTLED, frozenset()) == []


def test_a_tag_with_no_claim_is_removed_route_first() -> None:
    view, routes = consistent()
    view = dataclasses.replace(view, state=PreviewState({1: record(1, "a", SHA1)}))  # pr-2: no record
    assert actions(decide(view, routes, SETTLED, frozenset())) == [
        (REMOVE_ROUTE, 2, "b"),
        (REMOVE_TAG, 2, ""),
    ]


def test_a_tag_whose_record_holds_no_slot_is_removed() -> None:
    view, routes = consistent()
    state = PreviewState({1: record(1, "a", SHA1), 2: record(2, "", SHA2)})
    view = dataclasses.replace(view, state=state)
    assert actions(decide(view, routes[:1], SETTLED, frozenset())) == [(REMOVE_TAG, 2, "")]


def test_a_tag_with_no_claim_of_a_pr_being_deployed_is_left() -> None:
    view, routes = consistent()
    view = dataclasses.replace(view, state=PreviewState({1: record(1, "a", SHA1)}))
    repairs = decide(view, routes[:1], SETTLED, frozenset({2}))
    assert actions(repairs) == [(LEFT, 2, "")]
    assert "deploy of PR 2 is in flight" in repairs[0].note


def test_a_tag_with_no_claim_is_left_when_the_deploys_cannot_be_listed() -> None:
    view, routes = consistent()
    view = dataclasses.replace(view, state=PreviewState({1: record(1, "a", SHA1)}))
    repairs = decide(view, routes[:1], Liveness(now_ms=NOW_MS), None)
    assert actions(repairs) == [(LEFT, 2, "")]
    assert "cannot be listed" in repairs[0].note


def test_a_claim_without_a_tag_is_forgotten_and_its_route_removed() -> None:
    view, routes = consistent()
    view = dataclasses.replace(view, served=frozenset({"pr-1"}))
    assert actions(decide(view, routes, SETTLED, frozenset())) == [
        (FORGET_LOST, 2, ""),
        (REMOVE_ROUTE, 2, "b"),
    ]


def test_a_live_claim_without_a_tag_is_never_repaired() -> None:
    """A first deploy claims its slot before it writes its tag: the repair must not undo it."""
    view, routes = consistent()
    claimed = record(3, "b", SHA2, run_id="manual__3", claimed_ms=NOW_MS - 5000)
    state = PreviewState({1: record(1, "a", SHA1), 3: dataclasses.replace(claimed, revision="")})
    view = dataclasses.replace(view, served=frozenset({"pr-1"}), state=state)
    live = Liveness(now_ms=NOW_MS, active_runs=frozenset({"manual__3"}), listed_ms=NOW_MS - 1000)
    # its slot still routes to the evicted pr-2 (release_slot's route removal comes next): left too
    repairs = decide(view, routes, live, frozenset({3}))
    assert [r.action for r in repairs] == [LEFT, LEFT]
    assert all("PR 3 is in flight" in r.note or "PR 3 in flight" in r.note for r in repairs)
    # a claim made after the runs were listed is live as well, whatever the list says
    after = Liveness(now_ms=NOW_MS, active_runs=frozenset(), listed_ms=NOW_MS - 10_000)
    assert all(r.action == LEFT for r in decide(view, routes, after, frozenset()))
    # once its run has ended (and is listed as ended), the claim is repaired like any other
    ended = Liveness(now_ms=NOW_MS, active_runs=frozenset(), listed_ms=NOW_MS)
    assert actions(decide(view, routes, ended, frozenset())) == [(FORGET_LOST, 3, ""), (REMOVE_ROUTE, 2, "b")]
    # without Airflow's list, a claim is live for its grace
    stale = Liveness(now_ms=NOW_MS + CLAIM_GRACE_SECONDS * 1000)
    assert FORGET_LOST in [r.action for r in decide(view, routes, stale, frozenset())]


def test_a_route_to_a_tag_that_is_gone_is_removed() -> None:
    view, routes = consistent()
    view = dataclasses.replace(
        view, state=PreviewState({1: record(1, "a", SHA1)}), served=frozenset({"pr-1"})
    )
    assert actions(decide(view, routes, SETTLED, frozenset())) == [(REMOVE_ROUTE, 2, "b")]


def test_a_route_to_another_url_is_pointed_back_at_the_claim() -> None:
    view, routes = consistent()
    routes[1] = dataclasses.replace(routes[1], upstream_url="http://elsewhere.localhost:9")
    repairs = decide(view, routes, SETTLED, frozenset())
    assert actions(repairs) == [(POINT_ROUTE, 2, "b")]
    assert repairs[0].target is not None and repairs[0].target.upstream_url == URL2
    assert repairs[0].target.tag == "pr-2" and repairs[0].target.sha == SHA2


def test_a_route_to_another_preview_is_pointed_at_the_slot_holder() -> None:
    view, routes = consistent()
    routes[1] = route("b", 1, SHA1, URL1)  # slot b routes to pr-1, but pr-2 claims b
    repairs = decide(view, routes, SETTLED, frozenset())
    assert actions(repairs) == [(POINT_ROUTE, 2, "b")]
    assert repairs[0].target is not None and repairs[0].target.tag == "pr-2"


def test_a_route_of_a_slot_nobody_claims_is_removed() -> None:
    view, routes = consistent()
    state = PreviewState({1: record(1, "a", SHA1), 2: record(2, "", SHA2)})
    view = dataclasses.replace(view, state=state)
    # the route to pr-2 goes first, then pr-2's tag (its record holds no slot)
    assert actions(decide(view, routes, SETTLED, frozenset())) == [
        (REMOVE_ROUTE, 2, "b"),
        (REMOVE_TAG, 2, ""),
    ]


def test_a_settled_claim_without_a_route_gets_one() -> None:
    view, routes = consistent()
    repairs = decide(view, routes[:1], SETTLED, frozenset())
    assert actions(repairs) == [(POINT_ROUTE, 2, "b")]
    assert repairs[0].route is None and repairs[0].target is not None


def test_the_route_a_deploy_in_flight_removed_to_take_its_slot_over_is_not_put_back() -> None:
    """release_slot removes the holder's route, then (one write later) its tag and record."""
    view, routes = consistent()
    taker = Preview(pr=3, expires=2_000_000_000, taking="b", run_id="r3", claimed_ms=NOW_MS - 5000)
    state = PreviewState({1: record(1, "a", SHA1), 2: record(2, "b", SHA2), 3: taker})
    live = Liveness(now_ms=NOW_MS, active_runs=frozenset({"r3"}), listed_ms=NOW_MS - 1000)
    assert decide(dataclasses.replace(view, state=state), routes[:1], live, frozenset({3})) == []


def test_unsafe_cases_are_left_with_a_reason() -> None:
    view, routes = consistent()
    state = PreviewState({1: record(1, "a", SHA1), 2: record(2, "a", SHA2)})  # two claims on a
    view = dataclasses.replace(view, state=state)
    stray_slot = dataclasses.replace(routes[1], slot="zz", hostname="zz.preview.localhost")
    repairs = decide(view, [routes[0], stray_slot], SETTLED, frozenset())
    assert [r.action for r in repairs] == [LEFT, LEFT]
    assert {r.note for r in repairs} == {"two claims: pick by hand", "not a slot of the catalogue"}
    pinned = dataclasses.replace(
        view, state=PreviewState({1: record(1, "a", SHA1), 2: record(2, "", SHA2, pinned=True)})
    )
    left = decide(pinned, routes[:1], SETTLED, frozenset())
    assert [(r.action, r.pr) for r in left] == [(LEFT, 2)] and "pinned" in left[0].note
    missing = dataclasses.replace(view, exists=False)
    assert {r.note for r in decide(missing, routes, SETTLED, frozenset())} == {
        "Cloud Run has no such service"
    }


def test_a_lease_of_a_finished_task_is_released_and_others_are_kept() -> None:
    task = Lease("test-1", "faye_deploy/manual__1/test.run_tests/1", 1.0, 2.0, "c1")
    by_hand = Lease("test-1", "tests/queue-races/1", 1.0, 2.0, "c1")
    repair = decide_lease("test-1", task, alive=False)
    assert repair is not None and repair.action == RELEASE_LEASE and repair.lease == task
    assert decide_lease("test-1", task, alive=True) is None
    assert decide_lease("test-1", by_hand, alive=None) is None  # a person's lease is theirs to release
    assert decide_lease("test-1", None, alive=None) is None


# ------------------------------------------------------- the write re-decides on what it writes over


class FakeCloudRun:
    """``modify_service`` as the real hook runs it, with a conflicting writer between read and write."""

    def __init__(self, service: object, meanwhile: object = None) -> None:
        self.service = service
        self.meanwhile = meanwhile
        self.writes: list[tuple[object, list[str] | None]] = []

    def get_service(self, **_: object) -> object:
        return self.service

    def modify_service(self, *, change: object, **_: object) -> object:
        if callable(self.meanwhile):
            self.service, self.meanwhile = self.meanwhile(self.service), None
        planned = change(self.service)  # type: ignore[operator]
        if planned is None:
            return self.service
        self.service, mask = planned
        self.writes.append((self.service, mask))
        return self.service


class FakeProxy:
    def __init__(self, routes: list[SlotRoute]) -> None:
        self.routes = {r.slot: r for r in routes}

    def list_slot_routes(self) -> list[SlotRoute]:
        return list(self.routes.values())

    def get_slot_route(self, slot: str) -> SlotRoute | None:
        return self.routes.get(slot)

    def delete_slot_route(self, slot: str) -> bool:
        return self.routes.pop(slot, None) is not None

    def upsert_slot_route(self, route: SlotRoute) -> None:
        self.routes[route.slot] = route

    def slot_hostname(self, slot: str) -> str:
        return f"{slot}.preview.localhost"


def _service(state: PreviewState, tags: dict[str, str]) -> object:
    from google.cloud import run_v2

    kind = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
    service = run_v2.Service(
        name="projects/p/locations/r/services/hello",
        traffic=[run_v2.TrafficTarget(type_=kind, revision=rev, tag=tag) for tag, rev in tags.items()],
        traffic_statuses=[
            run_v2.TrafficTargetStatus(
                type_=kind, revision=rev, tag=tag, uri=f"http://{tag}---hello.run.localhost"
            )
            for tag, rev in tags.items()
        ],
    )
    state.write(service)
    return service


def _spec() -> object:
    from faye_plugin.catalogue import parse_catalogue

    doc = {
        "services": {
            "hello": {
                "cloud_run": {"project": "p", "region": "r"},
                "image": "127.0.0.1:5000/hello",
                "build": {"git_url": "/src"},
                "slots": ["a", "b"],
            }
        }
    }
    return parse_catalogue(doc).service("hello")


def test_a_stray_tag_goes_with_its_record_in_one_write() -> None:
    from faye_plugin.repair import InFlight, repair_service

    revs = {"pr-1": "hello-pr-1-1111111", "pr-3": "hello-pr-1-1111111"}
    cloud_run = FakeCloudRun(_service(PreviewState({1: record(1, "a", SHA1)}), revs))
    proxy = FakeProxy([route("a", 1, SHA1, "http://pr-1---hello.run.localhost")])
    done = repair_service(_spec(), cloud_run=cloud_run, proxy=proxy, inflight=InFlight(SETTLED, {}))  # type: ignore[arg-type]
    assert [(r.action, r.pr, r.done) for r in done] == [(REMOVE_TAG, 3, True)]
    assert len(cloud_run.writes) == 1 and cloud_run.writes[0][1] == ["traffic", "annotations"]
    assert {t.tag for t in cloud_run.service.traffic} == {"pr-1"}  # type: ignore[attr-defined]  (the spec)
    assert PreviewState.read(cloud_run.service).get(3) is None  # type: ignore[arg-type]


def test_a_stray_tag_claimed_between_the_read_and_the_write_stays() -> None:
    """A deploy of PR 3 claims (and records) its tag after the repair read: the write sees it."""
    from faye_plugin.hooks.cloud_run import tags
    from faye_plugin.repair import InFlight, repair_service

    revs = {"pr-1": "hello-pr-1-1111111", "pr-3": "hello-pr-3-2222222"}
    cloud_run = FakeCloudRun(_service(PreviewState({1: record(1, "a", SHA1)}), revs))
    claimed = PreviewState({1: record(1, "a", SHA1), 3: record(3, "b", SHA2, run_id="r3", claimed_ms=NOW_MS)})
    cloud_run.meanwhile = lambda _: _service(claimed, revs)
    proxy = FakeProxy([route("a", 1, SHA1, "http://pr-1---hello.run.localhost")])
    done = repair_service(_spec(), cloud_run=cloud_run, proxy=proxy, inflight=InFlight(SETTLED, {}))  # type: ignore[arg-type]
    assert [(r.action, r.pr, r.done) for r in done] == [(REMOVE_TAG, 3, False)]
    assert "claimed slot b meanwhile" in done[0].note
    assert cloud_run.writes == [] and tags(cloud_run.service) == {"pr-1", "pr-3"}  # type: ignore[arg-type]


def test_a_route_rewritten_after_the_read_is_not_touched() -> None:
    from faye_plugin.repair import InFlight, repair_service

    revs = {"pr-1": "hello-pr-1-1111111"}
    cloud_run = FakeCloudRun(_service(PreviewState({1: record(1, "a", SHA1)}), revs))
    stale = route("b", 9, SHA2, "http://pr-9---hello.run.localhost")  # a route to nothing
    proxy = FakeProxy([route("a", 1, SHA1, "http://pr-1---hello.run.localhost"), stale])
    fresh = route("b", 1, SHA1, "http://pr-1---hello.run.localhost")
    real_get = proxy.get_slot_route
    proxy.get_slot_route = lambda slot: (proxy.routes.__setitem__("b", fresh), real_get(slot))[1]  # type: ignore[method-assign]
    done = repair_service(_spec(), cloud_run=cloud_run, proxy=proxy, inflight=InFlight(SETTLED, {}))  # type: ignore[arg-type]
    assert [(r.action, r.slot, r.done, r.note) for r in done] == [
        (REMOVE_ROUTE, "b", False, "the route changed meanwhile")
    ]
    assert proxy.routes["b"] == fresh
