"""ProxyHook against the stack's real Caddy, with real throw-away upstreams."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
import requests
from faye_testing import start_upstream
from registry_peers import free_port

from faye_plugin.exceptions import InvalidRequestError, ProxyError
from faye_plugin.hooks.proxy import ProxyHook, SlotRoute, route_id, route_json

pytestmark = pytest.mark.integration
SHA = "0123456789abcdef0123456789abcdef01234567"


def use_proxy(monkeypatch: pytest.MonkeyPatch, stack: dict[str, Any], **extra: str) -> ProxyHook:
    conn = {
        "conn_type": "faye_proxy",
        "host": stack["proxy_admin_url"],
        "extra": {
            "server": "previews",
            "domain": "preview.localhost",
            "public_url": stack["proxy_public_url"],
            **extra,
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_FAYE_PROXY", json.dumps(conn))
    return ProxyHook()


@pytest.fixture
def upstream() -> Iterator[Callable[[str], str]]:
    """Start throw-away HTTP servers that answer ``<name> host=<Host header>``; return their base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(name: str) -> str:
        httpd = start_upstream(name)
        servers.append(httpd)
        # a *.localhost name, as the emulator's tag URLs are: the hook must dial 127.0.0.1
        return f"http://pr-1---hello.localhost:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def slot(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A slot name no other test uses; its routes are removed afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    use_proxy(monkeypatch, stack).delete_slot_route(name)


def via_proxy(stack: dict[str, Any], hostname: str) -> requests.Response:
    return requests.get(f"{stack['proxy_url']}/", headers={"Host": hostname}, timeout=10)


def raw_routes(stack: dict[str, Any], slot: str) -> list[dict[str, Any]]:
    routes = requests.get(
        f"{stack['proxy_admin_url']}/config/apps/http/servers/previews/routes", timeout=5
    ).json()
    return [r for r in routes if r.get("@id") == route_id(slot)]


def make_route(hook: ProxyHook, slot: str, upstream_url: str, pr: int = 1) -> SlotRoute:
    return SlotRoute(
        slot=slot,
        hostname=hook.slot_hostname(slot),
        upstream_url=upstream_url,
        service="hello",
        pr=pr,
        sha=SHA,
        revision=f"hello-pr-{pr}-0123456",
        tag=f"pr-{pr}",
    )


def test_upsert_route_replace_delete(
    stack: dict[str, Any], slot: str, upstream: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = use_proxy(monkeypatch, stack)
    assert hook.slot_url(slot) == stack["proxy_public_url"].format(slot=slot)
    hostname = hook.slot_hostname(slot)
    assert via_proxy(stack, hostname).status_code == 404  # the fallback, before

    first = make_route(hook, slot, upstream("one"))
    hook.upsert_slot_route(first)
    hook.upsert_slot_route(first)
    assert len(raw_routes(stack, slot)) == 1
    assert hook.get_slot_route(slot) == first
    assert first in hook.list_slot_routes()

    answer = via_proxy(stack, hostname)
    assert answer.status_code == 200
    # the upstream got the Host header of its own URL (the emulator picks the tag from it)
    assert answer.text == f"one host={first.upstream_url.removeprefix('http://')}"
    assert answer.headers["X-Faye-Pr"] == "1"
    assert answer.headers["X-Faye-Revision"] == "hello-pr-1-0123456"

    second = make_route(hook, slot, upstream("two"), pr=2)
    hook.upsert_slot_route(second)
    assert len(raw_routes(stack, slot)) == 1
    assert hook.get_slot_route(slot) == second
    assert via_proxy(stack, hostname).text.startswith("two host=")

    assert hook.delete_slot_route(slot) is True
    assert via_proxy(stack, hostname).status_code == 404
    assert hook.delete_slot_route(slot) is False
    assert hook.get_slot_route(slot) is None


def test_unknown_slot_is_none(stack: dict[str, Any], slot: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use_proxy(monkeypatch, stack)
    assert hook.get_slot_route(slot) is None
    assert all(r.slot != slot for r in hook.list_slot_routes())


def test_duplicate_ids_left_by_a_race_are_cleaned(
    stack: dict[str, Any], slot: str, upstream: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = use_proxy(monkeypatch, stack)
    stale = route_json(make_route(hook, slot, upstream("stale")))
    routes_url = f"{stack['proxy_admin_url']}/config/apps/http/servers/previews/routes/0"
    for _ in range(2):  # Caddy 2.6 accepts two objects with one @id
        requests.put(routes_url, json=stale, timeout=5).raise_for_status()
    assert len(raw_routes(stack, slot)) == 2

    fresh = make_route(hook, slot, upstream("fresh"), pr=3)
    hook.upsert_slot_route(fresh)
    assert len(raw_routes(stack, slot)) == 1
    assert hook.get_slot_route(slot) == fresh
    assert via_proxy(stack, fresh.hostname).text.startswith("fresh host=")

    requests.put(routes_url, json=stale, timeout=5).raise_for_status()
    assert hook.delete_slot_route(slot) is True
    assert raw_routes(stack, slot) == []


def test_https_upstream_uses_tls_and_the_upstream_host(
    stack: dict[str, Any], slot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = use_proxy(monkeypatch, stack)
    route = make_route(hook, slot, "https://pr-1---hello-abc123-ew.a.run.app")
    hook.upsert_slot_route(route)  # Caddy loads the TLS transport (it would answer 500 otherwise)
    (raw,) = raw_routes(stack, slot)
    proxy = raw["handle"][-1]
    assert proxy["upstreams"] == [{"dial": "pr-1---hello-abc123-ew.a.run.app:443"}]
    assert proxy["transport"]["tls"]["server_name"] == "pr-1---hello-abc123-ew.a.run.app"
    assert proxy["headers"]["request"]["set"]["Host"] == ["pr-1---hello-abc123-ew.a.run.app"]
    assert hook.get_slot_route(slot) == route


def test_refusals_are_clear(stack: dict[str, Any], slot: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use_proxy(monkeypatch, stack)
    with pytest.raises(InvalidRequestError, match="DNS label"):
        hook.get_slot_route("Bad_Slot")
    with pytest.raises(InvalidRequestError, match="hostname"):
        hook.upsert_slot_route(
            SlotRoute(
                slot, "elsewhere.example", "http://127.0.0.1:1", "hello", 1, SHA, "hello-pr-1-x", "pr-1"
            )
        )
    assert hook.test_connection()[0] is True
    wrong_server = use_proxy(monkeypatch, stack, server="no-such-server")
    ok, message = wrong_server.test_connection()
    assert not ok and "no-such-server" in message
    with pytest.raises(ProxyError, match=r"answered HTTP 4\d\d: .*no-such-server"):
        wrong_server.upsert_slot_route(make_route(wrong_server, slot, "http://127.0.0.1:1"))


@pytest.mark.parametrize("routes", [None, []], ids=["no-routes-key", "empty-routes"])
def test_first_route_on_a_server_without_routes(
    stack: dict[str, Any],
    upstream: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    routes: list[Any] | None,
) -> None:
    """Caddy refuses PUT routes/0 when there is no route yet; the hook must still create the first one."""
    server, port = f"h3tmp{uuid.uuid4().hex[:6]}", free_port()
    admin = f"{stack['proxy_admin_url']}/config/apps/http/servers/{server}"
    config: dict[str, Any] = {"listen": [f"127.0.0.1:{port}"], "automatic_https": {"disable": True}}
    if routes is not None:
        config["routes"] = routes
    requests.put(admin, json=config, timeout=5).raise_for_status()
    try:
        hook = use_proxy(monkeypatch, stack, server=server)
        route = make_route(hook, "a", upstream("first"))
        hook.upsert_slot_route(route)
        hook.upsert_slot_route(route)
        assert [r["@id"] for r in requests.get(f"{admin}/routes", timeout=5).json()] == ["faye-slot-a"]
        answer = requests.get(f"http://127.0.0.1:{port}/", headers={"Host": route.hostname}, timeout=10)
        assert answer.text.startswith("first host=")
        assert hook.delete_slot_route("a") is True
    finally:
        requests.delete(admin, timeout=5).raise_for_status()
