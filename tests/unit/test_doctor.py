"""``faye doctor``'s comparison: each kind of disagreement is reported, an agreeing snapshot is clean."""

from __future__ import annotations

import dataclasses

from faye_plugin.doctor import Claim, Route, ServiceState, Snapshot, compare

SHA1, SHA2 = "1" * 40, "2" * 40
URL1 = "http://pr-1---hello.run.localhost:28704"
URL2 = "http://pr-2---hello.run.localhost:28704"


def consistent() -> Snapshot:
    state = ServiceState(
        name="hello",
        exists=True,
        slots=("a", "b"),
        image="127.0.0.1:28703/hello",
        tags={"pr-1": "hello-pr-1-1111111", "pr-2": "hello-pr-2-2222222"},
        tag_urls={"pr-1": URL1, "pr-2": URL2},
        revision_labels={
            "hello-pr-1-1111111": {"faye-pr": "1", "faye-sha": SHA1, "faye-slot": "a"},
            "hello-pr-2-2222222": {"faye-pr": "2", "faye-sha": SHA2, "faye-slot": "b"},
        },
        claims={
            "pr-1": Claim("pr-1", 1, SHA1, "a", "hello-pr-1-1111111"),
            "pr-2": Claim("pr-2", 2, SHA2, "b", "hello-pr-2-2222222"),
        },
    )
    routes = [
        Route("a", "hello", 1, SHA1, "hello-pr-1-1111111", "pr-1", URL1),
        Route("b", "hello", 2, SHA2, "hello-pr-2-2222222", "pr-2", URL2),
    ]
    images = {("127.0.0.1:28703/hello", SHA1): True, ("127.0.0.1:28703/hello", SHA2): True}
    return Snapshot(services={"hello": state}, routes=routes, images=images)


def test_an_agreeing_snapshot_has_no_problems() -> None:
    assert compare(consistent()) == []


def test_a_route_to_a_tag_cloud_run_does_not_serve() -> None:
    snap = consistent()
    del snap.services["hello"].tags["pr-2"]
    problems = compare(snap)
    assert any("proxy route b" in p and "does not serve tag pr-2" in p for p in problems)
    assert any("claim pr-2 holds slot b but Cloud Run has no tag pr-2" in p for p in problems)


def test_a_tag_without_a_slot_claim() -> None:
    snap = consistent()
    snap.services["hello"].claims["pr-2"] = dataclasses.replace(
        snap.services["hello"].claims["pr-2"], slot=""
    )
    snap.routes = snap.routes[:1]
    problems = compare(snap)
    assert problems == ["service hello: Cloud Run tag pr-2 (revision hello-pr-2-2222222) has no slot claim"]


def test_a_tag_in_the_spec_that_cloud_run_does_not_serve() -> None:
    snap = consistent()
    del snap.services["hello"].tag_urls["pr-2"]
    problems = compare(snap)
    expected = "tag pr-2 on revision hello-pr-2-2222222, but Cloud Run does not serve it"
    assert any(expected in p for p in problems)


def test_two_claims_on_one_slot_and_two_routes() -> None:
    snap = consistent()
    snap.services["hello"].claims["pr-2"] = dataclasses.replace(
        snap.services["hello"].claims["pr-2"], slot="a"
    )
    snap.routes.append(Route("a", "hello", 2, SHA2, "hello-pr-2-2222222", "pr-2", URL2))
    problems = compare(snap)
    assert "service hello: slot a is claimed by 2 previews: pr-1, pr-2" in problems
    assert "proxy: slot a of hello has 2 routes" in problems


def test_a_claim_without_a_route_and_a_route_disagreeing_with_its_claim() -> None:
    snap = consistent()
    snap.routes[1] = Route("b", "hello", 2, SHA1, "hello-pr-2-2222222", "pr-2", URL2)
    del snap.routes[0]
    problems = compare(snap)
    assert "service hello: slot a is claimed by pr-1 but the proxy has no route" in problems
    assert any("proxy says sha 1111111, the claim says 2222222" in p for p in problems)


def test_a_route_to_the_wrong_url_and_revision_labels_that_disagree() -> None:
    snap = consistent()
    snap.routes[0] = dataclasses.replace(snap.routes[0], upstream_url="http://pr-9---hello.run.localhost:1")
    snap.services["hello"].revision_labels["hello-pr-2-2222222"]["faye-sha"] = SHA1
    problems = compare(snap)
    assert any("routes to http://pr-9---hello" in p for p in problems)
    assert any("tag pr-2 revision hello-pr-2-2222222 is sha 1111111" in p for p in problems)


def test_a_missing_image_and_an_unknown_service_route() -> None:
    snap = consistent()
    snap.images[("127.0.0.1:28703/hello", SHA2)] = False
    snap.routes.append(Route("c", "world", 3, SHA1, "world-pr-3", "pr-3", "http://x"))
    problems = compare(snap)
    assert f"service hello: image 127.0.0.1:28703/hello:{SHA2} of pr-2 is not in the registry" in problems
    assert any("service 'world' is not in the catalogue" in p for p in problems)


def test_claims_on_a_missing_service_and_read_errors_are_reported() -> None:
    snap = consistent()
    snap.services["hello"].exists = False
    snap.errors.append("proxy faye_proxy: cannot list routes: refused")
    problems = compare(snap)
    assert "proxy faye_proxy: cannot list routes: refused" in problems
    assert any("claim pr-1 recorded but Cloud Run has no service hello" in p for p in problems)
    assert any("Cloud Run has no service hello" in p and p.startswith("proxy route a") for p in problems)


def test_a_lease_of_a_finished_task_is_reported() -> None:
    snap = consistent()
    snap.leases = [
        "test server test-1: lease held by faye_test/r/test.run_tests/1, a task instance that has finished"
    ]
    assert compare(snap) == snap.leases
