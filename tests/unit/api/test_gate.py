"""The trigger gate without a stack: ``judge`` on bodies, and the middleware around a stand-in app."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from faye_plugin.api import gate
from faye_plugin.api.gate import TriggerGate, judge

CATALOGUE = {
    "services": {
        "hello": {
            "cloud_run": {"project": "local", "region": "europe-west1"},
            "image": "127.0.0.1:5000/hello",
            "build": {"git_url": "/tmp/hello"},
            "slots": ["a", "b"],
        }
    },
}
GOOD = {"service": "hello", "pr": 5, "git_sha": "a" * 40}


@pytest.fixture(autouse=True)
def catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(CATALOGUE))
    monkeypatch.setenv("AIRFLOW__FAYE__CATALOGUE", str(path))
    return path


def _body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def test_a_good_trigger_passes_as_sent() -> None:
    body = _body(dag_run_id="ci-77", logical_date="2026-01-01T00:00:00Z", conf=GOOD)
    verdict = judge("faye_deploy", body)
    assert verdict.answer is None and verdict.body is body


def test_a_null_or_missing_logical_date_gets_the_trigger_time() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    for body in (_body(logical_date=None, conf=GOOD, dag_run_id="mine"), _body(conf=GOOD, dag_run_id="mine")):
        verdict = judge("faye_test", body, now=now)
        sent = json.loads(verdict.body)
        assert sent == {"logical_date": now.isoformat(), "conf": GOOD, "dag_run_id": "mine"}


def test_a_trigger_that_names_no_run_gets_the_readable_run_id() -> None:
    now = datetime(2026, 12, 1, 12, 0, 5, 123000, tzinfo=UTC)
    for body in (_body(logical_date=None, conf=GOOD), _body(dag_run_id=None, conf=GOOD)):
        sent = json.loads(judge("faye_deploy", body, now=now).body)
        assert sent["dag_run_id"] == f"hello-pr-{GOOD['pr']}-{GOOD['git_sha'][:7]}-20261201T120005.123Z", sent
    teardown = json.loads(judge("faye_teardown", _body(conf={"service": "hello", "pr": 7}), now=now).body)
    assert teardown["dag_run_id"] == "hello-pr-7-teardown-20261201T120005.123Z"
    # a run id the caller chose is kept, and a conf naming no preview leaves Airflow's own id
    named = _body(logical_date="2026-01-01T00:00:00Z", dag_run_id="ci-1234", conf=GOOD)
    assert judge("faye_deploy", named, now=now).body is named
    assert "dag_run_id" not in json.loads(judge("faye_cleanup", _body(conf={}), now=now).body)


def test_every_problem_is_named_in_one_answer() -> None:
    conf = {"service": "nosuch", "pr": -1, "git_sha": "xyz", "sevice": "x", "priority": 1000}
    verdict = judge("faye_deploy", _body(logical_date=None, conf=conf))
    assert verdict.status == 400 and verdict.answer is not None
    fields = [p["field"] for p in verdict.answer["problems"]]
    assert sorted(fields) == ["git_sha", "pr", "priority", "service", "sevice"]
    assert "unknown service 'nosuch': the catalogue declares hello" in verdict.answer["detail"]
    assert "did you mean service?" in verdict.answer["detail"]


def test_a_slot_of_another_service_and_a_ttl_past_the_catalogue_are_refused(catalogue: Path) -> None:
    doc = {**CATALOGUE, "defaults": {"max_ttl_hours": 48}}
    catalogue.write_text(yaml.safe_dump(doc))
    verdict = judge("faye_deploy", _body(conf={**GOOD, "slot": "zz", "ttl_hours": 72}))
    assert verdict.answer is not None
    assert {p["field"] for p in verdict.answer["problems"]} == {"slot", "ttl_hours"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"\xff\xfe", "body"),
        (b"[1, 2]", "body"),
        (b'{"conf": {"pr": 1, "pr": 2}}', "body"),
        (_body(conf=[1]), "conf"),
        (_body(conf="service=hello"), "conf"),
    ],
)
def test_bodies_that_are_not_a_trigger_are_refused(body: bytes, field: str) -> None:
    verdict = judge("faye_build", body)
    assert verdict.status == 400 and verdict.answer is not None
    assert verdict.answer["problems"][0]["field"] == field


def test_cleanup_takes_no_conf() -> None:
    assert judge("faye_cleanup", _body(conf={})).answer is None
    verdict = judge("faye_cleanup", _body(conf={"service": "hello"}))
    assert verdict.answer is not None and verdict.answer["problems"][0]["field"] == "service"


def test_an_unreadable_catalogue_is_the_servers_fault(catalogue: Path) -> None:
    catalogue.unlink()
    verdict = judge("faye_deploy", _body(conf=GOOD))
    assert verdict.status == 503 and verdict.answer is not None
    assert "no catalogue at" in verdict.answer["detail"]


class _App:
    """Stands in for Airflow's app: records what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, dict[bytes, bytes]]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append((scope["path"], body, dict(scope["headers"])))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _call(app: Any, path: str, body: bytes, chunk: int = 1 << 20) -> tuple[int, bytes]:
    messages = [
        {"type": "http.request", "body": body[i : i + chunk], "more_body": i + chunk < len(body)}
        for i in range(0, max(len(body), 1), chunk)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [(b"content-length", str(len(body)).encode())],
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def allowed(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    answer = [True]

    async def may_trigger(scope: Any, dag_id: str) -> bool:
        return answer[0]

    monkeypatch.setattr(gate, "_may_trigger", may_trigger)
    return answer


def test_the_middleware_refuses_fills_and_passes(allowed: list[bool]) -> None:
    app = _App()
    middleware = TriggerGate(app)
    status, answer = _call(middleware, "/api/v2/dags/faye_deploy/dagRuns", _body(conf={"pr": 0}))
    assert status == 400 and not app.seen
    assert {p["field"] for p in json.loads(answer)["problems"]} == {"service", "pr", "git_sha"}
    status, _ = _call(middleware, "/api/v2/dags/faye_deploy/dagRuns", _body(logical_date=None, conf=GOOD), 7)
    assert status == 200
    _, body, headers = app.seen[-1]
    assert json.loads(body)["logical_date"] is not None
    assert headers[b"content-length"] == str(len(body)).encode()


def test_other_routes_dags_and_strangers_pass_untouched(allowed: list[bool]) -> None:
    app = _App()
    middleware = TriggerGate(app)
    bad = _body(conf={"pr": 0})
    for path in ("/api/v2/dags/other_dag/dagRuns", "/api/v2/dags/faye_deploy/dagRuns/x/clear"):
        assert _call(middleware, path, bad)[0] == 200
    allowed[0] = False  # Airflow answers 401/403 itself; the gate says nothing to a stranger
    assert _call(middleware, "/api/v2/dags/faye_deploy/dagRuns", bad)[0] == 200
    assert [body for _, body, _ in app.seen] == [bad, bad, bad]


def test_a_huge_body_is_refused_unread(allowed: list[bool]) -> None:
    app = _App()
    status, _ = _call(
        TriggerGate(app, max_body_bytes=1000), "/api/v2/dags/faye_test/dagRuns", b"x" * 5000, 100
    )
    assert status == 413 and not app.seen


def test_teardown_and_rollback_triggers_are_judged_too() -> None:
    from faye_plugin.params import FAYE_DAGS

    assert {"faye_teardown", "faye_rollback"} <= set(FAYE_DAGS)
    assert judge("faye_teardown", _body(logical_date=None, conf={"service": "hello", "pr": 5})).answer is None
    verdict = judge("faye_teardown", _body(conf={"service": "nosuch", "pr": 5, "git_sha": "a" * 40}))
    assert verdict.status == 400 and verdict.answer is not None
    assert sorted(p["field"] for p in verdict.answer["problems"]) == ["git_sha", "service"]
    verdict = judge("faye_rollback", _body(conf={"service": "hello", "pr": 5, "revision": "-bad"}))
    assert verdict.status == 400 and [p["field"] for p in verdict.answer["problems"]] == ["revision"]
