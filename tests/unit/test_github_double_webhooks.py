"""The GitHub double's webhooks against GitHub's published description of them (npm
``@octokit/openapi-webhooks``): every ``pull_request`` event the double delivers (opened, synchronize
by a new head and by a push to the branch, closed, reopened) carries the headers the description names
and a body that validates against its schema for that action, signed as GitHub signs
(``X-Hub-Signature-256``), and each delivery is recorded with the receiver's answer."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator
from octokit_specs import WEBHOOKS, fetch

from faye_plugin.stack.github_double import GithubState, make_server
from faye_plugin.stack.github_webhooks import WebhookSender

REPO = "local/hello"
SECRET = "webhook-secret-for-the-test"
TOKEN = "ghp_webhook-check-0123456789"
OLD, NEW, NEWER = "1" * 40, "2" * 40, "3" * 40


@pytest.fixture(scope="module")
def description() -> dict[str, Any]:
    return fetch(WEBHOOKS)


@pytest.fixture
def received() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver: keeps each request's headers and body, answers 202 with a JSON body."""
    got: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append({"headers": dict(self.headers.items()), "body": body})
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            data = json.dumps({"runs": [{"dag_id": "faye_deploy", "run_id": f"r{len(got)}"}]}).encode()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


@pytest.fixture
def double(received: tuple[str, list[dict[str, Any]]]) -> Iterator[str]:
    server = make_server(
        "127.0.0.1", 0, GithubState(), token=TOKEN, webhooks=WebhookSender(received[0], SECRET)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _wait_for(got: list[dict[str, Any]], count: int) -> None:
    import time

    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(got) == count, f"{len(got)} deliveries, expected {count}"


def test_every_pull_request_event_is_githubs_shape_and_signed(
    description: dict[str, Any], double: str, received: tuple[str, list[dict[str, Any]]]
) -> None:
    _, got = received
    auth = {"Authorization": f"token {TOKEN}"}

    def pulls(body: dict[str, Any]) -> None:
        requests.post(f"{double}/_double/pulls", json={"repo": REPO, **body}, timeout=5).raise_for_status()

    def state(value: str) -> None:
        answer = requests.patch(
            f"{double}/repos/{REPO}/pulls/5", json={"state": value}, headers=auth, timeout=5
        )
        answer.raise_for_status()

    pulls({"number": 5, "head_sha": OLD, "head_ref": "feature"})  # opened
    pulls({"number": 5, "head_sha": NEW, "head_ref": "feature"})  # synchronize (a new head)
    pulls({"number": 5, "head_sha": NEW, "head_ref": "feature"})  # nothing changed: no event
    push = {"repo": REPO, "ref": "refs/heads/feature", "sha": NEWER}
    assert requests.post(f"{double}/_double/push", json=push, timeout=5).json() == {"pulls": [5]}
    push_elsewhere = {"repo": REPO, "ref": "refs/heads/other", "sha": OLD}
    assert requests.post(f"{double}/_double/push", json=push_elsewhere, timeout=5).json() == {"pulls": []}
    state("closed")
    state("open")  # reopened
    pulls({"number": 6, "head_sha": OLD, "deliver": False})  # a test's quiet change: no event
    _wait_for(got, 5)

    actions = []
    for delivery in got:  # in the order they arrived (each is sent from a thread of its own)
        headers = {k.lower(): v for k, v in delivery["headers"].items()}
        payload = json.loads(delivery["body"])
        action = payload["action"]
        actions.append(action)
        operation = description["webhooks"][f"pull-request-{action}"]["post"]
        for parameter in operation["parameters"]:
            assert parameter["name"].lower() in headers, (action, parameter["name"])
        assert headers["x-github-event"] == "pull_request"
        expected = "sha256=" + hmac.new(SECRET.encode(), delivery["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-hub-signature-256"], expected)
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        validator = Draft202012Validator({**schema, "components": description["components"]})
        errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
        problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors[:12]]
        assert not problems, f"pull_request {action}: " + "; ".join(problems)
    assert sorted(actions) == sorted(["opened", "synchronize", "synchronize", "closed", "reopened"])

    listed = requests.get(f"{double}/_double/deliveries", timeout=5).json()
    assert [(d["action"], d["status"]) for d in listed] == [
        (a, 202) for a in ("opened", "synchronize", "synchronize", "closed", "reopened")
    ]
    assert [d["answer"]["runs"][0]["dag_id"] for d in listed] == ["faye_deploy"] * 5


def test_a_pr_opened_on_first_use_sends_no_webhook(received: tuple[str, list[dict[str, Any]]]) -> None:
    """The local stack's double opens a PR nobody opened when faye first reports to it (``--any-pull``).
    That stands for a PR open before faye heard of it: a webhook would deploy it a second time (it
    did, in CI: a REST-triggered deploy's report opened the PR, and the webhook's deploy superseded it)."""
    url, got = received
    server = make_server(
        "127.0.0.1", 0, GithubState(), token=TOKEN, any_pull=True, webhooks=WebhookSender(url, SECRET)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    double = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        requests.post(f"{double}/_double/repos", json={"full_name": REPO}, timeout=5).raise_for_status()
        auth = {"Authorization": f"token {TOKEN}"}
        answer = requests.post(
            f"{double}/repos/{REPO}/issues/42/comments", json={"body": "hi"}, headers=auth, timeout=5
        )
        assert answer.status_code == 201, answer.text
        state = requests.get(f"{double}/_double/state", timeout=5).json()[REPO]
        assert [(p["number"], p["state"]) for p in state["pulls"]] == [(42, "open")]
        assert requests.get(f"{double}/_double/deliveries", timeout=5).json() == []
        assert got == []
    finally:
        server.shutdown()
        server.server_close()
