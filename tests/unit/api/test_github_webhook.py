"""GitHub webhooks: the signature check, what each event asks for, and the route's answers.

The route runs in FastAPI's TestClient with the database session and the trigger replaced (the real
trigger, on the stack, is tests/integration/test_github_report.py's); the signature is made as GitHub
makes it (HMAC-SHA256 of the raw body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from faye_plugin.api import github_webhook
from faye_plugin.catalogue import parse_catalogue

SHA = "0123456789abcdef0123456789abcdef01234567"
SECRET = "webhook-secret-for-tests"
NOW = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)
CATALOGUE = parse_catalogue(
    {
        "services": {
            name: {
                "cloud_run": {"project": "p", "region": "r"},
                "image": "i",
                "build": {"git_url": "/x"},
                "slots": ["a"],
                **({"github": {"repo": repo}} if repo else {}),
            }
            for name, repo in (("hello", "local/hello"), ("api", "local/hello"), ("quiet", None))
        }
    }
)


def _event(action: str, pr: int = 7, repo: str = "local/hello", sha: str = SHA) -> dict[str, Any]:
    return {
        "action": action,
        "number": pr,
        "pull_request": {"number": pr, "head": {"sha": sha, "ref": "feature"}},
        "repository": {"full_name": repo},
    }


def _sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_signature_is_githubs_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"zen": "Keep it logically awesome."}'
    assert github_webhook.signature_ok(SECRET, body, _sign(body))
    assert not github_webhook.signature_ok(SECRET, body + b" ", _sign(body))
    assert not github_webhook.signature_ok(SECRET, body, _sign(body, "other"))
    assert not github_webhook.signature_ok(SECRET, body, _sign(body).replace("sha256=", "sha1="))
    assert not github_webhook.signature_ok(SECRET, body, None)
    assert not github_webhook.signature_ok("", body, _sign(body, ""))


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_an_opened_or_pushed_pr_deploys_every_service_of_its_repository(action: str) -> None:
    triggers, why = github_webhook.plan("pull_request", _event(action), CATALOGUE, "abc-123", NOW)
    assert [(t.dag_id, t.service, t.conf) for t in triggers] == [
        ("faye_deploy", "api", {"service": "api", "pr": 7, "git_sha": SHA}),
        ("faye_deploy", "hello", {"service": "hello", "pr": 7, "git_sha": SHA}),
    ]
    # one delivery, one run id: GitHub's redelivery finds it
    assert [t.run_id for t in triggers] == ["api-pr-7-0123456-gh-abc-123", "hello-pr-7-0123456-gh-abc-123"]
    assert why == f"pull_request {action} of local/hello #7: deploy api, hello"


def test_a_closed_pr_tears_down() -> None:
    triggers, _ = github_webhook.plan("pull_request", _event("closed"), CATALOGUE, "d-1", NOW)
    assert [(t.dag_id, t.conf, t.run_id) for t in triggers] == [
        ("faye_teardown", {"service": "api", "pr": 7}, "api-pr-7-teardown-gh-d-1"),
        ("faye_teardown", {"service": "hello", "pr": 7}, "hello-pr-7-teardown-gh-d-1"),
    ]


@pytest.mark.parametrize(
    ("event", "payload", "why"),
    [
        ("push", _event("opened"), "event push is not handled"),
        ("pull_request", _event("labeled"), "action labeled is not handled"),
        (
            "pull_request",
            _event("opened", repo="other/repo"),
            "no service of the catalogue reports to other/repo",
        ),
        ("pull_request", _event("opened", sha="main"), "no head commit"),
        ("pull_request", _event("opened", pr=0), "no pull request number"),
        ("pull_request", [], "not a JSON object"),
    ],
)
def test_other_events_are_ignored(event: str, payload: Any, why: str) -> None:
    triggers, said = github_webhook.plan(event, payload, CATALOGUE, "x", NOW)
    assert triggers == [] and why in said


def test_without_a_delivery_id_the_run_id_is_the_trigger_time() -> None:
    [deploy, _] = github_webhook.plan("pull_request", _event("opened"), CATALOGUE, None, NOW)[0]
    assert deploy.run_id == "api-pr-7-0123456-20261207T230000.000Z"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> tuple[TestClient, list[Any]]:
    from airflow.api_fastapi.common.db.common import _get_session

    made: list[Any] = []
    seen: set[str] = set()
    dates: set[datetime] = set()

    def trigger(session: Any, t: Any, now: datetime) -> bool:
        assert now not in dates  # Airflow keeps (dag_id, logical_date) unique
        dates.add(now)
        made.append(t)
        new = t.run_id not in seen
        seen.add(t.run_id)
        return new

    monkeypatch.setattr(github_webhook, "_secret", lambda: SECRET)
    monkeypatch.setattr(github_webhook, "_trigger", trigger)
    monkeypatch.setattr("faye_plugin.catalogue.load_catalogue", lambda path=None: CATALOGUE)
    app = github_webhook.create_app()
    app.dependency_overrides[_get_session] = lambda: None
    return TestClient(app), made


def _post(client: TestClient, body: bytes, signature: str | None, event: str = "pull_request") -> Any:
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": "del-1", "Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return client.post(github_webhook.WEBHOOK_PATH, content=body, headers=headers)


def test_a_bad_or_missing_signature_is_401_and_triggers_nothing(client: tuple[TestClient, list[Any]]) -> None:
    app, made = client
    body = json.dumps(_event("opened")).encode()
    assert _post(app, body, None).status_code == 401
    assert _post(app, body, _sign(body, "wrong")).status_code == 401
    assert _post(app, body + b"\n", _sign(body)).status_code == 401
    assert made == []


def test_a_signed_event_triggers_and_a_redelivery_makes_no_second_run(
    client: tuple[TestClient, list[Any]],
) -> None:
    app, made = client
    body = json.dumps(_event("synchronize")).encode()
    first = _post(app, body, _sign(body))
    assert first.status_code == 202, first.text
    assert [r["new"] for r in first.json()["runs"]] == [True, True]
    again = _post(app, body, _sign(body))
    assert [r["new"] for r in again.json()["runs"]] == [False, False]
    assert {t.run_id for t in made} == {"api-pr-7-0123456-gh-del-1", "hello-pr-7-0123456-gh-del-1"}


def test_ping_and_ignored_events(client: tuple[TestClient, list[Any]]) -> None:
    app, made = client
    ping = b'{"zen": "hi"}'
    assert _post(app, ping, _sign(ping), event="ping").json() == {"detail": "pong"}
    other = json.dumps(_event("opened", repo="else/where")).encode()
    answer = _post(app, other, _sign(other))
    assert answer.status_code == 202 and answer.json()["runs"] == []
    assert made == []


def test_no_secret_configured_is_503(
    client: tuple[TestClient, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _ = client
    monkeypatch.setattr(github_webhook, "_secret", lambda: None)
    body = b"{}"
    answer = _post(app, body, _sign(body))
    assert answer.status_code == 503 and "faye_github_webhook" in answer.json()["detail"]


def test_the_webhook_app_is_mounted_before_the_previews_page() -> None:
    from faye_plugin.plugin import FayePlugin

    prefixes = [spec["url_prefix"] for spec in FayePlugin().fastapi_apps]
    assert prefixes == ["/faye/github", "/faye"]
