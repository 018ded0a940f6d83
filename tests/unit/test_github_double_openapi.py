"""The GitHub double against GitHub's published OpenAPI description (npm ``@octokit/openapi``).

Every route the double serves must exist in the description with that method, every answer it gives
(successes and errors) must validate against the description's schema for that operation and status,
with no field the description does not name, and what faye's hook sends must validate against the
operations' request bodies. So the double cannot drift from GitHub, and neither can faye's requests.

The description is fetched once with ``npm pack`` into ``.cache/octokit/`` (``tests/octokit_specs.py``).
OpenAPI 3.0's ``nullable`` becomes JSON Schema's ``null`` type.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from jsonschema import Draft4Validator
from octokit_specs import REST, fetch

from faye_plugin.hooks.github import GithubReportHook, marker
from faye_plugin.stack.github_double import Double, GithubState, make_server

SHA = "89abcdef0123456789abcdef0123456789abcdef"
TOKEN = "ghp_openapi-check-0123456789"
REPO = "local/hello"
# Keywords of OpenAPI 3.0 that JSON Schema does not have (dropped) or spells otherwise (nullable).
OPENAPI_ONLY = {"nullable", "example", "examples", "discriminator", "xml", "externalDocs", "deprecated"}


def to_json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as a JSON Schema (draft 4), strict: objects name every field they allow."""
    if isinstance(node, list):
        return [to_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in OPENAPI_ONLY:
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        else:
            out[key] = to_json_schema(value)
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


@pytest.fixture(scope="module")
def description() -> dict[str, Any]:
    return fetch(REST)


@pytest.fixture(scope="module")
def components(description: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": to_json_schema(description["components"]["schemas"])}


def _operation(description: dict[str, Any], method: str, template: str) -> dict[str, Any]:
    path = description["paths"].get(template)
    assert path is not None, f"{template} is not a path of GitHub's REST API"
    operation = path.get(method.lower())
    assert operation is not None, f"{method} {template} is not an operation of GitHub's REST API"
    return dict(operation)


def _resolve(description: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        section, name = node["$ref"].split("/")[-2:]
        node = description["components"][section][name]
    return node


def _response_schema(description: dict[str, Any], method: str, template: str, status: int) -> Any:
    responses = _operation(description, method, template)["responses"]
    answer = responses.get(str(status))
    if answer is None:  # an error GitHub answers on every route (401, 404) the description leaves out
        assert status >= 400, f"{method} {template} never answers {status}"
        return {"$ref": "#/components/schemas/basic-error"}
    content = _resolve(description, answer).get("content")
    if content is None:
        return None
    return to_json_schema(content["application/json"]["schema"])


def _check(schema: Any, components: dict[str, Any], instance: Any, what: str) -> None:
    validator = Draft4Validator({**schema, "components": components})
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}" for e in errors[:5]]
    assert not problems, f"{what}: {len(errors)} schema error(s): " + "; ".join(problems)


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Double]]:
    server = make_server("127.0.0.1", 0, GithubState(), token=TOKEN)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    conn = {"conn_type": "github", "host": url, "password": TOKEN, "extra": {"seconds_between_writes": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_FAYE_GITHUB", json.dumps(conn))
    yield url, server.RequestHandlerClass.double  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_every_route_of_the_double_is_a_github_operation(description: dict[str, Any]) -> None:
    double = Double(GithubState(), "http://127.0.0.1:1")
    for method, template, _, _ in double.routes:
        _operation(description, method, template)


def test_every_answer_validates_against_githubs_description(
    description: dict[str, Any], components: dict[str, Any], double: tuple[str, Double]
) -> None:
    url, server = double
    auth = {"Authorization": f"token {TOKEN}"}
    requests.post(f"{url}/_double/pulls", json={"repo": REPO, "number": 3, "head_sha": SHA}, timeout=5)
    calls: list[tuple[str, str, str, Any]] = []  # (method, route template, path, body)

    def call(method: str, template: str, path: str, body: Any = None) -> requests.Response:
        calls.append((method, template, path, body))
        return requests.request(method, url + path, json=body, headers=auth, timeout=5)

    base = f"/repos/{REPO}"
    answers: list[tuple[str, str, requests.Response]] = []

    def run(method: str, template: str, path: str, body: Any = None) -> requests.Response:
        answer = call(method, template, path, body)
        answers.append((method, template, answer))
        return answer

    t = "/repos/{owner}/{repo}"
    run("GET", t + "/pulls/{pull_number}", f"{base}/pulls/3")
    comment = run(
        "POST", t + "/issues/{issue_number}/comments", f"{base}/issues/3/comments", {"body": "hi"}
    ).json()
    run("GET", t + "/issues/{issue_number}/comments", f"{base}/issues/3/comments")
    run("GET", t + "/issues/comments/{comment_id}", f"{base}/issues/comments/{comment['id']}")
    run(
        "PATCH",
        t + "/issues/comments/{comment_id}",
        f"{base}/issues/comments/{comment['id']}",
        {"body": "yo"},
    )
    run("POST", t + "/statuses/{sha}", f"{base}/statuses/{SHA}", {"state": "success", "context": "c"})
    run("GET", t + "/commits/{ref}/statuses", f"{base}/commits/{SHA}/statuses")
    dep = run(
        "POST",
        t + "/deployments",
        f"{base}/deployments",
        {
            "ref": SHA,
            "environment": "preview/hello/pr-3",
            "transient_environment": True,
            "required_contexts": [],
        },
    ).json()
    run("GET", t + "/deployments", f"{base}/deployments?environment=preview/hello/pr-3")
    run("GET", t + "/deployments/{deployment_id}", f"{base}/deployments/{dep['id']}")
    statuses = t + "/deployments/{deployment_id}/statuses"
    run(
        "POST",
        statuses,
        f"{base}/deployments/{dep['id']}/statuses",
        {"state": "success", "log_url": "http://l"},
    )
    run("GET", statuses, f"{base}/deployments/{dep['id']}/statuses")
    run("PATCH", t + "/pulls/{pull_number}", f"{base}/pulls/3", {"state": "closed"})
    run("DELETE", t + "/issues/comments/{comment_id}", f"{base}/issues/comments/{comment['id']}")
    run("DELETE", t + "/environments/{environment_name}", f"{base}/environments/preview%2Fhello%2Fpr-3")
    # errors, in GitHub's shapes
    run("POST", statuses, f"{base}/deployments/{dep['id']}/statuses", {"state": "done"})  # 422
    run("POST", t + "/issues/{issue_number}/comments", f"{base}/issues/3/comments", {})  # 422
    run("GET", t + "/pulls/{pull_number}", f"{base}/pulls/99")  # 404
    run("GET", t + "/deployments", "/repos/local/nope/deployments")  # 404
    bad = requests.get(f"{url}{base}/deployments", headers={"Authorization": "token nope"}, timeout=5)
    answers.append(("GET", t + "/deployments", bad))

    assert {a.status_code for _, _, a in answers} >= {200, 201, 204, 401, 404, 422}
    served = {(m, tmpl) for m, tmpl, _, _ in server.routes}
    assert served == {(m, tmpl) for m, tmpl, _ in answers}, "every route of the double is exercised here"
    for method, template, answer in answers:
        what = f"{method} {template} -> {answer.status_code}"
        schema = _response_schema(description, method, template, answer.status_code)
        if schema is None:
            assert not answer.content, f"{what}: GitHub answers no body"
            continue
        _check(schema, components, answer.json(), what)


def test_what_the_hook_sends_validates_against_the_request_bodies(
    description: dict[str, Any], components: dict[str, Any], double: tuple[str, Double]
) -> None:
    url, server = double
    requests.post(f"{url}/_double/pulls", json={"repo": REPO, "number": 4, "head_sha": SHA}, timeout=5)
    hook = GithubReportHook(REPO)
    dep = hook.ensure_deployment("preview/hello/pr-4", SHA, description="hello PR 4", payload={"pr": 4})
    hook.post_deployment_status(dep, "in_progress", description="deploying", log_url="http://airflow/r")
    hook.post_deployment_status(
        dep, "success", description="ok", log_url="http://a/r", environment_url="http://s"
    )
    hook.set_commit_status(
        SHA, "success", context="faye/hello/tests", description="ok", target_url="http://t"
    )
    mark = marker("hello")
    hook.upsert_comment(4, mark, f"{mark}\none")
    hook.upsert_comment(4, mark, f"{mark}\ntwo")
    hook.commit_status(SHA, "faye/hello/tests")
    sent = server.requests
    assert {(r["method"], r["route"]) for r in sent} >= {
        ("POST", "/repos/{owner}/{repo}/deployments"),
        ("POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"),
        ("POST", "/repos/{owner}/{repo}/statuses/{sha}"),
        ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
        ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
        ("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses"),
    }
    for request in sent:
        operation = _operation(description, request["method"], request["route"])
        if request["body"] is None:
            assert "requestBody" not in operation or not operation["requestBody"].get("required")
            continue
        body = _resolve(description, operation["requestBody"])["content"]["application/json"]["schema"]
        _check(
            to_json_schema(body),
            components,
            request["body"],
            f"request {request['method']} {request['route']}",
        )
