"""operators/proxy.py: ReleaseSlotOperator and UpdateProxyOperator.

Validation is checked without a stack (it happens before any request); routing and releasing run
against the stack's real Caddy admin API (marked integration), on a service and slots of their own
(``proxy-op``, ``op-1``/``op-2``) in a copy of the stack's catalogue, whose routes are removed after.
The released holder's service does not exist on Cloud Run, so only the proxy half of a removal runs.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from faye_testing import start_upstream

from faye_plugin.exceptions import CatalogueError, FayeError
from faye_plugin.hooks.proxy import ProxyHook, SlotRoute
from faye_plugin.operators.proxy import ReleaseSlotOperator, UpdateProxyOperator

SERVICE = "proxy-op"
SLOTS = ("op-1", "op-2")
SHA = "0123456789abcdef0123456789abcdef01234567"


def service_spec(slots: tuple[str, ...] = SLOTS) -> dict[str, Any]:
    return {
        "cloud_run": {"project": "local", "region": "europe-west1", "service": SERVICE},
        "image": "127.0.0.1:1/proxy-op",
        "build": {"git_url": "/nonexistent"},
        "slots": list(slots),
        "port": 8080,
    }


def write_catalogue(path: Path, base: dict[str, Any] | None = None) -> Path:
    data = base or {"services": {}}
    data.setdefault("services", {})[SERVICE] = service_spec()
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalogue of our own and a proxy connection nobody answers: any request would fail."""
    monkeypatch.setenv("AIRFLOW__FAYE__CATALOGUE", str(write_catalogue(tmp_path / "catalogue.yaml")))
    conn = {"conn_type": "faye_proxy", "host": f"http://127.0.0.1:{closed_port()}"}
    monkeypatch.setenv("AIRFLOW_CONN_FAYE_PROXY", json.dumps(conn))


def test_template_fields() -> None:
    assert ReleaseSlotOperator.template_fields == ("service", "pr", "slot")
    assert UpdateProxyOperator.template_fields == ("service", "preview")


@pytest.mark.parametrize("preview", [None, "not a dict", {"slot": "op-1"}, {"url": "http://x.localhost"}])
def test_update_proxy_needs_the_deployed_preview(offline: None, preview: Any) -> None:
    operator = UpdateProxyOperator(task_id="update_proxy", service=SERVICE, preview=preview)
    with pytest.raises(FayeError, match="update_proxy needs the deployed preview"):
        operator.execute({})


def test_unknown_slot_or_service_fails_before_any_request(offline: None) -> None:
    preview = {"url": "http://pr-1---proxy-op.localhost:1", "slot": "zz", "pr": 1}
    with pytest.raises(CatalogueError, match="unknown slot 'zz'"):
        UpdateProxyOperator(task_id="update_proxy", service=SERVICE, preview=preview).execute({})
    with pytest.raises(CatalogueError, match="unknown slot 'zz'"):
        ReleaseSlotOperator(task_id="release_slot", service=SERVICE, pr=1, slot="zz").execute({})
    with pytest.raises(CatalogueError, match="unknown service 'nosuch'"):
        ReleaseSlotOperator(task_id="release_slot", service="nosuch", pr=1, slot="op-1").execute({})


# --- against the stack's Caddy -----------------------------------------------------------------------


@pytest.fixture
def proxy_env(
    stack: dict[str, Any], stack_process_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ProxyHook]:
    """The stack's connections, a copy of its catalogue with ``proxy-op``; our slots' routes go after."""
    base = yaml.safe_load(Path(stack["catalogue"]).read_text())
    monkeypatch.setenv("AIRFLOW__FAYE__CATALOGUE", str(write_catalogue(tmp_path / "catalogue.yaml", base)))
    proxy = ProxyHook()
    for slot in SLOTS:
        proxy.delete_slot_route(slot)
    yield proxy
    for slot in SLOTS:
        proxy.delete_slot_route(slot)


@pytest.fixture
def upstream() -> Iterator[str]:
    """A throw-away HTTP server answering ``upstream host=<Host>``; its URL as a *.localhost tag URL."""
    httpd = start_upstream("upstream")
    try:
        yield f"http://pr-7---proxy-op.localhost:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def through_proxy(stack: dict[str, Any], hostname: str) -> requests.Response:
    return requests.get(f"{stack['proxy_url'].rstrip('/')}/", headers={"Host": hostname}, timeout=10)


def route(proxy: ProxyHook, slot: str, pr: int, upstream_url: str) -> SlotRoute:
    return SlotRoute(
        slot=slot,
        hostname=proxy.slot_hostname(slot),
        upstream_url=upstream_url,
        service=SERVICE,
        pr=pr,
        sha=SHA,
        revision=f"{SERVICE}-pr-{pr}-0123456",
        tag=f"pr-{pr}",
    )


@pytest.mark.integration
def test_update_proxy_routes_the_slot_to_the_tag_url(
    stack: dict[str, Any], proxy_env: ProxyHook, upstream: str
) -> None:
    preview = {"url": upstream, "slot": "op-1", "pr": 7, "sha": SHA, "revision": "proxy-op-r7", "tag": "pr-7"}
    operator = UpdateProxyOperator(task_id="update_proxy", service=SERVICE, preview=preview)
    result = operator.execute({})
    again = operator.execute({})  # idempotent: still one route

    hostname = proxy_env.slot_hostname("op-1")
    assert (
        result
        == again
        == {
            "slot": "op-1",
            "slot_url": proxy_env.slot_url("op-1"),
            "hostname": hostname,
            "upstream": upstream,
            "revision": "proxy-op-r7",
            "sha": SHA,
        }
    )
    routes = [r for r in proxy_env.list_slot_routes() if r.slot == "op-1"]
    assert [(r.service, r.pr, r.tag) for r in routes] == [(SERVICE, 7, "pr-7")]
    answer = through_proxy(stack, hostname)
    assert answer.status_code == 200
    assert answer.text == f"upstream host={upstream.split('://', 1)[1]}"
    assert answer.headers["X-Faye-Pr"] == "7"


@pytest.mark.integration
def test_release_slot_removes_the_holder_and_moves_the_pr(proxy_env: ProxyHook, upstream: str) -> None:
    proxy_env.upsert_slot_route(route(proxy_env, "op-1", 7, upstream))  # PR 7 holds op-1
    proxy_env.upsert_slot_route(route(proxy_env, "op-2", 8, upstream))  # PR 8 holds op-2, asks for op-1

    result = ReleaseSlotOperator(task_id="release_slot", service=SERVICE, pr=8, slot="op-1").execute({})

    assert result["slot"] == "op-1"
    assert result["moved_from"] == ["op-2"]
    assert [(r["service"], r["pr"], r["routes_removed"]) for r in result["released"]] == [
        (SERVICE, 7, ["op-1"])
    ]
    assert proxy_env.get_slot_route("op-1") is None
    assert proxy_env.get_slot_route("op-2") is None


@pytest.mark.integration
def test_release_slot_of_a_free_slot_changes_nothing(proxy_env: ProxyHook, upstream: str) -> None:
    proxy_env.upsert_slot_route(route(proxy_env, "op-2", 7, upstream))  # another slot's holder stays
    result = ReleaseSlotOperator(task_id="release_slot", service=SERVICE, pr=9, slot="op-1").execute({})
    assert result == {"slot": "op-1", "released": [], "moved_from": []}
    held = proxy_env.get_slot_route("op-2")
    assert held is not None and held.pr == 7
