"""faye_plugin/airflow_rest.py: the one Airflow REST client, over the official apache-airflow-client.

Against the stack's real Airflow (marked integration): reads, a duplicate run id refused at once
(409 on the first POST), an unreachable API tried ``attempts`` times. A real api-server cannot be made
to answer 500 to a trigger or 401 to a valid token on demand, so the resend of a POST answered 500
(409 on the resend = the first landed) and the token refresh are checked against a minimal fake that
answers the documented JSON of those endpoints (DAGRunResponse as Airflow 3.3 sends it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from faye_plugin.airflow_rest import AirflowApiClient
from faye_plugin.exceptions import AirflowApiError


def run_json(run_id: str, state: str = "queued") -> dict[str, Any]:
    return {
        "dag_run_id": run_id,
        "dag_id": "faye_deploy",
        "dag_display_name": "faye_deploy",
        "dag_versions": [],
        "logical_date": "2026-12-01T10:00:00Z",
        "queued_at": "2026-12-01T10:00:00Z",
        "run_after": "2026-12-01T10:00:00Z",
        "run_type": "manual",
        "state": state,
        "conf": {"service": "hello", "pr": 1},
        "note": None,
    }


class FakeAirflow:
    """Answers ``POST /auth/token`` and the dagRuns endpoints from scripted statuses; records requests."""

    def __init__(self) -> None:
        self.post_statuses: list[int] = []
        self.patch_statuses: list[int] = []
        self.get_401 = 0
        self.requests: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
        self.tokens = 0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                fake.requests.append(("POST", self.path, body, self.headers.get("Authorization")))
                if self.path == "/auth/token":
                    fake.tokens += 1
                    self._send(201, {"access_token": f"token-{fake.tokens}"})
                    return
                status = fake.post_statuses.pop(0)
                if status == 200:
                    self._send(200, run_json(body["dag_run_id"]))
                else:
                    self._send(status, {"detail": f"scripted {status}"})

            def do_PATCH(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                fake.requests.append(("PATCH", self.path, body, self.headers.get("Authorization")))
                status = fake.patch_statuses.pop(0)
                if status == 200:
                    run = run_json(
                        self.path.split("?")[0].rsplit("/", 1)[-1], state=body.get("state") or "running"
                    )
                    self._send(200, run | {"note": body.get("note")})
                else:
                    self._send(status, {"detail": f"scripted {status}"})

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, None, self.headers.get("Authorization")))
                if fake.get_401:
                    fake.get_401 -= 1
                    self._send(401, {"detail": "token expired"})
                    return
                self._send(200, run_json(self.path.rsplit("/", 1)[-1], state="running"))

        return Handler


@pytest.fixture
def fake() -> Iterator[tuple[FakeAirflow, AirflowApiClient]]:
    state = FakeAirflow()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    client = AirflowApiClient(f"http://127.0.0.1:{httpd.server_address[1]}", "faye", "pw", timeout=5)
    try:
        yield state, client
    finally:
        httpd.shutdown()
        httpd.server_close()


def posts(state: FakeAirflow) -> list[dict[str, Any]]:
    return [
        body
        for method, path, body, _ in state.requests
        if method == "POST" and path != "/auth/token" and body
    ]


def test_a_trigger_answered_500_is_sent_again_with_the_same_run_id(
    fake: tuple[FakeAirflow, AirflowApiClient],
) -> None:
    state, client = fake
    state.post_statuses = [500, 200]
    run = client.trigger("faye_deploy", {"service": "hello", "pr": 1}, run_id="ci-1")
    assert run.run_id == "ci-1" and run.state == "queued"
    sent = posts(state)
    assert [b["dag_run_id"] for b in sent] == ["ci-1", "ci-1"]
    assert sent[0]["logical_date"] == sent[1]["logical_date"]  # the same request, not a new run


def test_a_409_on_the_resend_means_the_first_post_landed(fake: tuple[FakeAirflow, AirflowApiClient]) -> None:
    state, client = fake
    state.post_statuses = [500, 409]
    run = client.trigger("faye_deploy", {}, run_id="ci-2")
    assert (run.run_id, run.state) == ("ci-2", "running")  # read back with GET
    assert [m for m, p, *_ in state.requests if p != "/auth/token"] == ["POST", "POST", "GET"]


def test_a_409_on_the_first_post_is_an_error_at_once(fake: tuple[FakeAirflow, AirflowApiClient]) -> None:
    state, client = fake
    state.post_statuses = [409, 200]
    with pytest.raises(AirflowApiError, match="HTTP 409"):
        client.trigger("faye_deploy", {}, run_id="ci-3")
    assert len(posts(state)) == 1


def test_500_three_times_is_an_error(fake: tuple[FakeAirflow, AirflowApiClient]) -> None:
    state, client = fake
    state.post_statuses = [500, 500, 500]
    with pytest.raises(AirflowApiError, match="HTTP 500"):
        client.trigger("faye_deploy", {}, run_id="ci-4")
    assert len(posts(state)) == 3


def test_a_patch_answered_500_is_sent_again(fake: tuple[FakeAirflow, AirflowApiClient]) -> None:
    """A PATCH of a run's state and note is idempotent: one answered 500 (SQLite's "database is
    locked" on a busy embedded stack, which failed a deploy's ``still_newest`` in CI) is sent again."""
    state, client = fake
    state.patch_statuses = [500, 200]
    run = client.set_note("faye_deploy", "r1", "waiting for a slot")
    assert run.note == "waiting for a slot"
    patches = [body for method, _, body, _ in state.requests if method == "PATCH"]
    assert patches == [{"note": "waiting for a slot"}] * 2
    state.patch_statuses = [500, 500, 500]
    with pytest.raises(AirflowApiError, match="HTTP 500"):
        client.set_note("faye_deploy", "r1", "x")


def test_a_401_logs_in_again_once(fake: tuple[FakeAirflow, AirflowApiClient]) -> None:
    state, client = fake
    state.get_401 = 1
    assert client.get_run("faye_deploy", "r1").state == "running"
    gets = [auth for method, _, _, auth in state.requests if method == "GET"]
    assert gets == ["Bearer token-1", "Bearer token-2"]
    state.get_401 = 2
    with pytest.raises(AirflowApiError, match="HTTP 401"):
        client.get_run("faye_deploy", "r1")


# --- against the stack's Airflow ----------------------------------------------------------------------


@pytest.fixture
def client(stack: dict[str, Any]) -> AirflowApiClient:
    return AirflowApiClient(stack["airflow_url"], stack["airflow_username"], stack["airflow_password"])


@pytest.mark.integration
def test_reads_against_airflow(client: AirflowApiClient) -> None:
    assert client.health()["metadatabase"]["status"] == "healthy"
    assert {"faye_deploy", "faye_cleanup"} <= {d["dag_id"] for d in client.dags()}
    pool = client.pool("faye_test_servers")
    assert pool is not None and pool["include_deferred"] is True
    assert client.pool("no-such-pool") is None
    assert client.list_runs("no_such_dag") == []
    assert client.find_run("faye_cleanup", "no-such-run") is None
    tasks = client.dag_tasks("faye_cleanup")
    assert "find_expired" in tasks and all(isinstance(v, list) for v in tasks.values())
    _, changed = client.sync_pool(int(pool["slots"]))
    assert changed is False  # the stack's pool is already right


@pytest.mark.integration
def test_a_run_id_that_exists_is_refused_at_once(client: AirflowApiClient) -> None:
    runs = [r for r in client.list_runs("faye_cleanup", states=()) if r.run_type == "manual"]
    if not runs:
        runs = [client.trigger("faye_cleanup", {})]
    existing = runs[-1]
    before = len(client.list_runs("faye_cleanup", states=(), limit=1000))
    with pytest.raises(AirflowApiError, match="HTTP 409"):
        client.trigger("faye_cleanup", {}, run_id=existing.run_id)
    assert len(client.list_runs("faye_cleanup", states=(), limit=1000)) == before
    assert client.get_run("faye_cleanup", existing.run_id).run_id == existing.run_id


@pytest.mark.integration
def test_an_unreachable_api_is_an_error_after_the_attempts(stack: dict[str, Any]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(AirflowApiError, match="unreachable"):
        AirflowApiClient(f"http://127.0.0.1:{port}", attempts=2).health()
