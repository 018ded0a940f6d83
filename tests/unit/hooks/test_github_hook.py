"""The GitHub hook against the stack's GitHub double, in this process (real HTTP, real PyGithub).

What the hook sends (the double records every request), what it reads back, its retries (faults
injected into the double) and its errors (401, 404) naming the connection.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from faye_plugin.exceptions import GithubReportError
from faye_plugin.hooks.github import GithubReportHook, marker, short
from faye_plugin.retries import RetryPolicy
from faye_plugin.stack.github_double import GithubState, make_server

SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "ghp_unit-test-token-0123456789"
REPO = "local/hello"
ENV = "preview/hello/pr-7"


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, GithubState(), token=TOKEN)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    conn = {"conn_type": "github", "host": url, "password": TOKEN, "extra": {"seconds_between_writes": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_FAYE_GITHUB", json.dumps(conn))
    bad = {"conn_type": "github", "host": url, "password": "ghp_wrong-token-0123456789"}
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_BAD", json.dumps(bad))
    requests.post(f"{url}/_double/pulls", json={"repo": REPO, "number": 7, "head_sha": SHA}, timeout=5)
    yield url
    server.shutdown()
    server.server_close()


def _sent(url: str) -> list[dict[str, Any]]:
    return [r for r in requests.get(f"{url}/_double/requests", timeout=5).json() if r["method"] != "GET"]


def _state(url: str) -> dict[str, Any]:
    state: dict[str, Any] = requests.get(f"{url}/_double/state", timeout=5).json()[REPO]
    return state


def test_a_deployment_is_transient_not_production_and_found_again_for_the_same_sha(double: str) -> None:
    hook = GithubReportHook(REPO)
    first = hook.ensure_deployment(ENV, SHA, description="hello PR 7", payload={"pr": 7, "service": "hello"})
    again = hook.ensure_deployment(ENV, SHA, description="hello PR 7", payload={"pr": 7, "service": "hello"})
    assert first == again
    [create] = _sent(double)
    assert (create["method"], create["route"]) == ("POST", "/repos/{owner}/{repo}/deployments")
    assert create["body"] == {
        "ref": SHA,
        "environment": ENV,
        "description": "hello PR 7",
        "payload": {"pr": 7, "service": "hello"},
        "transient_environment": True,
        "production_environment": False,
        "auto_merge": False,
        "required_contexts": [],
    }


def test_deployment_statuses_carry_log_and_environment_urls(double: str) -> None:
    hook = GithubReportHook(REPO)
    dep = hook.ensure_deployment(ENV, SHA, description="d", payload={})
    hook.post_deployment_status(dep, "in_progress", description="deploying", log_url="http://airflow/run")
    hook.post_deployment_status(
        dep,
        "success",
        description="x" * 300,
        log_url="http://airflow/run",
        environment_url="http://a.preview",
    )
    statuses = [r["body"] for r in _sent(double) if r["route"].endswith("/statuses")]
    assert statuses[0] == {
        "state": "in_progress",
        "description": "deploying",
        "log_url": "http://airflow/run",
    }
    assert statuses[1]["environment_url"] == "http://a.preview"
    assert len(statuses[1]["description"]) == 140  # GitHub's bound
    [info] = hook.deployments(ENV)
    assert (info.id, info.sha, info.state) == (dep, SHA, "success")
    with pytest.raises(ValueError, match="not one of"):
        hook.post_deployment_status(dep, "done", description="")


def test_commit_status_is_set_and_read_back_per_context(double: str) -> None:
    hook = GithubReportHook(REPO)
    assert hook.commit_status(SHA, "faye/hello/tests") is None
    hook.set_commit_status(SHA, "pending", context="faye/hello/tests", description="running")
    hook.set_commit_status(
        SHA, "success", context="faye/hello/tests", description="passed", target_url="http://airflow/t"
    )
    hook.set_commit_status(SHA, "failure", context="other", description="x")
    assert hook.commit_status(SHA, "faye/hello/tests") == "success"
    last = [r for r in _sent(double) if r["route"] == "/repos/{owner}/{repo}/statuses/{sha}"][1]
    assert last["path"] == f"/repos/{REPO}/statuses/{SHA}"
    assert last["body"] == {
        "state": "success",
        "context": "faye/hello/tests",
        "description": "passed",
        "target_url": "http://airflow/t",
    }


def test_one_sticky_comment_per_service_edited_in_place(double: str) -> None:
    hook = GithubReportHook(REPO)
    mark = marker("hello")
    cid, created = hook.upsert_comment(7, mark, f"{mark}\nfirst")
    assert created
    assert hook.upsert_comment(7, mark, f"{mark}\nsecond") == (cid, False)
    assert hook.upsert_comment(7, mark, f"{mark}\nsecond") == (cid, False)  # unchanged: no write
    other = marker("other")
    hook.upsert_comment(7, other, f"{other}\nanother service")
    comments = _state(double)["comments"]
    assert sorted(c["body"] for c in comments) == [f"{mark}\nsecond", f"{other}\nanother service"]
    writes = [(r["method"], r["route"].rsplit("/", 2)[-2:]) for r in _sent(double)]
    assert [w[0] for w in writes] == ["POST", "PATCH", "POST"]
    with pytest.raises(ValueError, match="marker"):
        hook.upsert_comment(7, mark, "no marker")


def test_a_duplicate_comment_from_a_race_is_removed(double: str) -> None:
    mark = marker("hello")
    headers = {"Authorization": f"token {TOKEN}"}
    for text in ("one", "two"):
        requests.post(
            f"{double}/repos/{REPO}/issues/7/comments",
            json={"body": f"{mark}\n{text}"},
            headers=headers,
            timeout=5,
        )
    cid, created = GithubReportHook(REPO).upsert_comment(7, mark, f"{mark}\nthree")
    [kept] = _state(double)["comments"]
    assert (kept["id"], kept["body"], created) == (cid, f"{mark}\nthree", False)


def test_transient_answers_are_retried_by_faye_alone(double: str) -> None:
    route = "POST /repos/{owner}/{repo}/deployments"
    requests.post(f"{double}/_double/faults", json={"route": route, "status": 502, "count": 2}, timeout=5)
    hook = GithubReportHook(REPO, policy=RetryPolicy(attempts=3, first_wait=0.01))
    dep = hook.ensure_deployment(ENV, SHA, description="d", payload={})
    creates = [r for r in _sent(double) if r["route"] == "/repos/{owner}/{repo}/deployments"]
    assert len(creates) == 3  # two 502s, then the one that landed: no second retry layer (PyGithub's)
    assert [d["id"] for d in _state(double)["deployments"]] == [dep]


def test_a_lasting_5xx_is_a_report_error_after_the_policys_tries(double: str) -> None:
    requests.post(f"{double}/_double/faults", json={"route": "*", "status": 500, "count": 10}, timeout=5)
    hook = GithubReportHook(REPO, policy=RetryPolicy(attempts=2, first_wait=0.01))
    with pytest.raises(GithubReportError, match=r"GitHub answered 500"):
        hook.set_commit_status(SHA, "success", context="c", description="d")
    assert len(_sent(double)) == 2


def test_bad_token_and_unknown_repository_name_the_connection(double: str) -> None:
    with pytest.raises(GithubReportError, match=r"token of connection 'github_bad' was refused \(401"):
        GithubReportHook(REPO, "github_bad").deployments(ENV)
    with pytest.raises(
        GithubReportError, match=r"'local/nope' was not found through connection 'faye_github'"
    ):
        GithubReportHook("local/nope").upsert_comment(7, marker("x"), marker("x"))


def test_a_refused_field_is_not_retried(double: str) -> None:
    with pytest.raises(GithubReportError, match="GitHub answered 422"):
        GithubReportHook(REPO).set_commit_status("not-a-sha", "success", context="c", description="d")
    assert len(_sent(double)) == 1


def test_short_keeps_one_line() -> None:
    assert short("a\n b  c") == "a b c"
    assert short("x" * 200, 10) == "x" * 9 + "…"


def test_a_pr_nobody_opened_is_404_unless_the_double_opens_any_pr(double: str, monkeypatch) -> None:
    hook = GithubReportHook(REPO)
    with pytest.raises(GithubReportError, match="404"):
        hook.upsert_comment(42, marker("hello"), marker("hello"))
    server = make_server("127.0.0.1", 0, GithubState(), token=TOKEN, any_pull=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    conn = {"conn_type": "github", "host": url, "password": TOKEN, "extra": {"seconds_between_writes": 0}}
    monkeypatch.setenv("AIRFLOW_CONN_FAYE_GITHUB", json.dumps(conn))
    requests.post(f"{url}/_double/repos", json={"full_name": REPO}, timeout=5)
    try:
        anyone = GithubReportHook(REPO)
        anyone.ensure_deployment("preview/hello/pr-42", SHA, description="d", payload={})
        anyone.upsert_comment(42, marker("hello"), marker("hello"))
        [pull] = _state(url)["pulls"]
        assert (pull["number"], pull["state"], pull["head"]["sha"]) == (42, "open", SHA)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("host", "page"),
    [
        ("https://api.github.com", "https://github.com/local/hello/pull/7"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com/local/hello/pull/7"),
        ("http://127.0.0.1:28808", "http://127.0.0.1:28808/local/hello/pull/7"),
    ],
)
def test_the_pull_request_page_is_made_from_the_api_base_without_a_request(
    host: str, page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {"conn_type": "github", "host": host, "password": TOKEN}
    monkeypatch.setenv("AIRFLOW_CONN_FAYE_GITHUB_PAGES", json.dumps(conn))
    hook = GithubReportHook(REPO, "faye_github_pages", policy=RetryPolicy(attempts=1))
    assert hook.pull_request_url(7) == page  # the hosts do not exist: no request was made
