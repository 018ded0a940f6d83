from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from faye_plugin.triggers.preview import PreviewReadyTrigger, local_target, probe


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # 200 only for the slot host the proxy would route; 503 for anything else
        ok = self.headers.get("Host", "").startswith("a.preview.localhost")
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"no")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_localhost_names_are_sent_to_the_loopback_with_their_host_header() -> None:
    assert local_target("http://a.preview.localhost:8000/x?y=1") == (
        "http://127.0.0.1:8000/x?y=1",
        {"Host": "a.preview.localhost:8000"},
    )
    assert local_target("https://example.com/") == ("https://example.com/", {})


def test_probe_reaches_a_localhost_name(port: int) -> None:
    assert probe(f"http://a.preview.localhost:{port}") == 200
    assert probe(f"http://b.preview.localhost:{port}") == 503


def test_probe_reports_nothing_answering_as_none() -> None:
    assert probe("http://a.preview.localhost:9", timeout=1) is None


def _first_event(trigger: PreviewReadyTrigger) -> dict[str, object]:
    async def first() -> dict[str, object]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    return asyncio.run(first())


def test_trigger_fires_ready_for_a_2xx_and_timeout_otherwise(port: int) -> None:
    ready = _first_event(PreviewReadyTrigger(f"http://a.preview.localhost:{port}", 0.05, 5))
    assert ready["status"] == "ready" and ready["last_status"] == 200
    late = _first_event(PreviewReadyTrigger(f"http://b.preview.localhost:{port}", 0.05, 0.2))
    assert late["status"] == "timeout" and late["last_status"] == 503


def test_trigger_serializes_to_its_own_arguments() -> None:
    path, kwargs = PreviewReadyTrigger("http://a.preview.localhost:1", 2.0, 30.0).serialize()
    assert path == "faye_plugin.triggers.preview.PreviewReadyTrigger"
    assert PreviewReadyTrigger(**kwargs).serialize() == (path, kwargs)
