"""faye_plugin/retries.py: a transient error is tried again, anything else is raised at once.

The policy itself is checked with a counting callable. The hooks are checked against peers that count
what reaches them: a socket that accepts and hangs up at once (an unreachable admin API, as the proxy
hook meets it when Caddy restarts) and a plain HTTP server answering a fixed status (the real
registry cannot be made to answer 503 or 500 on demand). These minimal peers are the only fakes; the
real Caddy/registry paths are in tests/integration/hooks/.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from faye_plugin.exceptions import ProxyError, RegistryError
from faye_plugin.hooks.proxy import ProxyHook
from faye_plugin.hooks.registry import RegistryHook
from faye_plugin.retries import DEFAULT_POLICY, RetryPolicy

FAST = RetryPolicy(attempts=3, first_wait=0.01, max_wait=0.02)


class Flaky:
    """Fails with ``error`` ``failures`` times, then answers ``answer``; counts its calls."""

    def __init__(self, error: BaseException, failures: int, answer: object = "ok") -> None:
        self.error, self.failures, self.answer, self.calls = error, failures, answer, 0

    def __call__(self) -> object:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.answer


def test_a_transient_error_is_tried_again() -> None:
    flaky = Flaky(ConnectionError("reset"), failures=2)
    assert FAST.call(flaky, (ConnectionError,)) == "ok"
    assert flaky.calls == 3


def test_another_error_is_raised_at_once() -> None:
    flaky = Flaky(ValueError("bad request"), failures=5)
    with pytest.raises(ValueError, match="bad request"):
        FAST.call(flaky, (ConnectionError,))
    assert flaky.calls == 1


def test_out_of_attempts_the_last_error_is_raised_as_it_is() -> None:
    flaky = Flaky(ConnectionError("still down"), failures=10)
    with pytest.raises(ConnectionError, match="still down"):
        FAST.call(flaky, (ConnectionError,))
    assert flaky.calls == 3


def test_a_transient_answer_is_tried_again_and_returned_when_attempts_run_out() -> None:
    answers = iter([503, 503, 200])
    assert FAST.call(lambda: next(answers), (), transient_result=lambda a: a == 503) == 200
    always = Flaky(ConnectionError(), failures=0, answer=503)
    assert FAST.call(always, (), transient_result=lambda a: a == 503) == 503
    assert always.calls == 3


def test_an_error_named_by_a_predicate_is_transient_too() -> None:
    flaky = Flaky(RuntimeError("HTTP 503"), failures=1)
    assert FAST.call(flaky, (), transient_error=lambda e: "503" in str(e)) == "ok"
    assert flaky.calls == 2


def test_the_default_policy_is_bounded() -> None:
    assert DEFAULT_POLICY.attempts == 3
    assert DEFAULT_POLICY.with_attempts(1).attempts == 1


# --- the hooks on peers that count ------------------------------------------------------------------


@pytest.fixture
def hang_up() -> Iterator[tuple[str, list[int]]]:
    """A TCP server that accepts every connection and closes it at once; yields (URL, [accepts])."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = [0]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted[0] += 1
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    finally:
        server.close()


@pytest.fixture
def answering() -> Iterator[tuple[str, list[int], list[int]]]:
    """An HTTP server answering every request with the status last put in ``status``; counts them."""
    status, seen = [503], [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def _answer(self) -> None:
            seen[0] += 1
            body = json.dumps({"errors": [{"code": "UNKNOWN", "message": f"status {status[0]}"}]}).encode()
            self.send_response(status[0])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer()

        def do_HEAD(self) -> None:
            self._answer()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", status, seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_proxy_hook_tries_an_unreachable_admin_api_attempts_times(
    hang_up: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, accepted = hang_up
    monkeypatch.setenv("AIRFLOW_CONN_FAYE_PROXY", json.dumps({"conn_type": "faye_proxy", "host": url}))
    with pytest.raises(ProxyError, match="admin API unreachable"):
        ProxyHook(attempts=3).get_slot_route("a")
    assert accepted[0] == 3


def test_registry_hook_retries_503_and_reports_500_at_the_first_answer(
    answering: tuple[str, list[int], list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, status, seen = answering
    monkeypatch.setenv("AIRFLOW_CONN_FAYE_REGISTRY", json.dumps({"conn_type": "faye_registry", "host": url}))
    with pytest.raises(RegistryError, match="HTTP 503"):
        RegistryHook(attempts=3).get_manifest_digest("hello", "latest")
    assert seen[0] == 3 + 3  # three HEADs, then three GETs for the registry's own words
    status[0], seen[0] = 500, 0
    with pytest.raises(RegistryError, match=r"HTTP 500: .*UNKNOWN"):
        RegistryHook(attempts=3).get_manifest_digest("hello", "latest")
    assert seen[0] == 1 + 1  # one HEAD, one GET: not retried
