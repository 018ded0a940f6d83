"""A pull request's preview reported to GitHub, on the real local stack and its GitHub double.

Deploys through Airflow's REST API, then reads back what the double holds: one deployment for the
PR's environment ending ``success`` with the slot URL (which answers with the sha), the tests' commit
status, exactly one faye comment (a second deploy edits it); a teardown makes the deployment
``inactive`` and says so in the comment. GitHub answering 500 leaves a working preview, a green run and
a visibly failed ``report_outcome``. A signed ``pull_request`` webhook deploys and tears down; a badly
signed one makes no run. A failed build is reported as a failure naming the step. PRs 811-814 of
``hello`` (repository ``local/hello`` on the double).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from faye_testing import AirflowAPI

pytestmark = pytest.mark.integration

SERVICE = "hello"
REPO = "local/hello"
PR_REPORTED, PR_GITHUB_DOWN, PR_WEBHOOK, PR_BROKEN = 811, 812, 813, 814
MARKER = f"<!-- faye:{SERVICE} -->"


def _double(stack: dict[str, Any], path: str, **kwargs: Any) -> requests.Response:
    method = kwargs.pop("method", "GET")
    return requests.request(method, f"{stack['github_url']}{path}", timeout=10, **kwargs)


def _repo(stack: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = _double(stack, "/_double/state").json()[REPO]
    return state


def _open_pr(stack: dict[str, Any], pr: int, sha: str) -> None:
    answer = _double(
        # without the webhook delivery (these tests trigger their runs themselves)
        stack,
        "/_double/pulls",
        method="POST",
        json={"repo": REPO, "number": pr, "head_sha": sha, "deliver": False},
    )
    assert answer.status_code == 201, answer.text


def _run(api: AirflowAPI, dag_id: str, conf: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    run = api.trigger(dag_id, conf)
    done = api.wait_run(dag_id, run["dag_run_id"], timeout=600)
    states = {k: v["state"] for k, v in api.task_instances(dag_id, run["dag_run_id"]).items()}
    return done, states


def _outcome(api: AirflowAPI, run_id: str) -> dict[str, Any]:
    path = f"dags/faye_deploy/dagRuns/{run_id}/taskInstances/preview_url/xcomEntries/return_value"
    return dict(api.get(path)["value"])


def _ours(repo: dict[str, Any], pr: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The PR's deployments and its faye comments on the double."""
    env = f"preview/{SERVICE}/pr-{pr}"
    deployments = [d for d in repo["deployments"] if d["environment"] == env]
    comments = [
        c for c in repo["comments"] if c["issue_url"].endswith(f"/issues/{pr}") and MARKER in c["body"]
    ]
    return deployments, comments


def test_a_deploy_reports_a_deployment_a_status_and_one_comment(stack, airflow_api, shas) -> None:
    sha = shas[0]
    _open_pr(stack, PR_REPORTED, sha)
    # from no preview (a kept stack may still serve this PR: the deploy would be a no-op, untested)
    removed, _ = _run(airflow_api, "faye_teardown", {"service": SERVICE, "pr": PR_REPORTED})
    assert removed["state"] == "success", removed
    done, states = _run(airflow_api, "faye_deploy", {"service": SERVICE, "pr": PR_REPORTED, "git_sha": sha})
    assert done["state"] == "success", states
    assert states["report_started"] == states["report_outcome"] == "success", states
    outcome = _outcome(airflow_api, done["dag_run_id"])

    deployments, comments = _ours(_repo(stack), PR_REPORTED)
    [deployment] = deployments
    assert (deployment["sha"], deployment["ref"]) == (sha, sha)
    assert deployment["transient_environment"] is True and deployment["production_environment"] is False
    newest = deployment["statuses"][0]
    # newest first (a kept stack's double may hold an earlier session's statuses of the same deployment)
    assert [s["state"] for s in deployment["statuses"]][:2] == ["success", "in_progress"]
    assert newest["environment_url"] == outcome["slot_url"]
    assert done["dag_run_id"] in newest["log_url"]
    # the environment URL GitHub shows answers with the deployed commit
    host = outcome["slot_url"].split("://", 1)[1].split("/", 1)[0]
    page = requests.get(stack["proxy_url"], headers={"Host": host}, timeout=10)
    assert page.status_code == 200 and sha in page.text

    tests = [
        s for s in _repo(stack)["statuses"] if s["url"].endswith(sha) and s["context"] == "faye/hello/tests"
    ]
    assert tests and {s["state"] for s in tests} == {"success"}
    # this run's status (a kept stack's double may hold an earlier run's for the same sha)
    assert any(s["target_url"].endswith(f"/runs/{done['dag_run_id']}/tasks/test.run_tests") for s in tests), (
        tests
    )

    # the extra links the UI shows on the tasks: "Preview" on update_proxy, "Pull request" on report_started
    tis = f"dags/faye_deploy/dagRuns/{done['dag_run_id']}/taskInstances"
    assert airflow_api.get(f"{tis}/update_proxy/links")["extra_links"] == {"Preview": outcome["slot_url"]}
    pull = f"{stack['github_url']}/{REPO}/pull/{PR_REPORTED}"
    assert airflow_api.get(f"{tis}/report_started/links")["extra_links"] == {"Pull request": pull}

    [comment] = comments
    for words in (outcome["slot_url"], sha[:7], "passed", done["dag_run_id"], "Expires"):
        assert words in comment["body"], (words, comment["body"])

    # the same commit again: a no-op, still one deployment and one comment, edited in place
    again, states = _run(airflow_api, "faye_deploy", {"service": SERVICE, "pr": PR_REPORTED, "git_sha": sha})
    assert again["state"] == "success" and states["report_outcome"] == "success", states
    deployments, comments = _ours(_repo(stack), PR_REPORTED)
    assert [d["id"] for d in deployments] == [deployment["id"]]
    assert deployments[0]["statuses"][0]["state"] == "success"
    [edited] = comments
    assert edited["id"] == comment["id"]
    assert again["dag_run_id"] in edited["body"] and "no change" in edited["body"], edited["body"]
    assert "last result for this commit: success" in edited["body"]

    # closing: the deployment becomes inactive, the comment says torn down
    closed, states = _run(airflow_api, "faye_teardown", {"service": SERVICE, "pr": PR_REPORTED})
    assert closed["state"] == "success" and states["report_teardown"] == "success", states
    deployments, comments = _ours(_repo(stack), PR_REPORTED)
    assert [d["statuses"][0]["state"] for d in deployments] == ["inactive"]
    [gone] = comments
    assert gone["id"] == comment["id"] and "torn down" in gone["body"], gone["body"]


def test_github_answering_500_leaves_a_working_preview_and_a_red_report(stack, airflow_api, shas) -> None:
    sha = shas[0]
    _open_pr(stack, PR_GITHUB_DOWN, sha)
    fault = {"route": "*", "status": 500, "count": 1000}
    assert _double(stack, "/_double/faults", method="POST", json=fault).status_code == 201
    try:
        conf = {"service": SERVICE, "pr": PR_GITHUB_DOWN, "git_sha": sha}
        done, states = _run(airflow_api, "faye_deploy", conf)
    finally:
        _double(stack, "/_double/faults", method="DELETE")
    assert done["state"] == "success", states  # the preview's fate is not the report's
    assert states["deploy_revision"] == states["test.run_tests"] == "success", states
    assert states["report_started"] == "success"  # a warning: the outcome tries again
    assert states["report_outcome"] == "failed", states
    assert done["note"].startswith("deployed: "), done["note"]
    outcome = _outcome(airflow_api, done["dag_run_id"])
    host = outcome["slot_url"].split("://", 1)[1].split("/", 1)[0]
    assert requests.get(stack["proxy_url"], headers={"Host": host}, timeout=10).status_code == 200
    assert _ours(_repo(stack), PR_GITHUB_DOWN) == ([], [])

    closed, states = _run(airflow_api, "faye_teardown", {"service": SERVICE, "pr": PR_GITHUB_DOWN})
    assert closed["state"] == "success", states


def _webhook(stack: dict[str, Any], event: dict[str, Any], secret: str, delivery: str) -> requests.Response:
    body = json.dumps(event).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
    }
    return requests.post(
        f"{stack['airflow_url']}/faye/github/webhook", data=body, headers=headers, timeout=30
    )


def _total(api: AirflowAPI, dag_id: str) -> int:
    return int(api.get(f"dags/{dag_id}/dagRuns", limit=1)["total_entries"])


def test_signed_pull_request_webhooks_deploy_and_tear_down(stack, airflow_api, shas) -> None:
    secret = json.loads((Path(stack["state_dir"]) / "secrets.json").read_text())["github_webhook_secret"]
    sha = shas[0]
    _open_pr(stack, PR_WEBHOOK, sha)
    opened = {
        "action": "opened",
        "number": PR_WEBHOOK,
        "pull_request": {"number": PR_WEBHOOK, "head": {"sha": sha, "ref": f"pr-{PR_WEBHOOK}"}},
        "repository": {"full_name": REPO},
    }
    before = _total(airflow_api, "faye_deploy")
    refused = _webhook(stack, opened, "not-the-secret", str(uuid.uuid4()))
    assert refused.status_code == 401, refused.text
    assert _total(airflow_api, "faye_deploy") == before  # no run

    delivery = str(uuid.uuid4())
    answer = _webhook(stack, opened, secret, delivery)
    assert answer.status_code == 202, answer.text
    # (another service of a kept stack's catalogue may report to local/hello too: one run each)
    [run] = [r for r in answer.json()["runs"] if r["run_id"].startswith(f"{SERVICE}-pr-")]
    assert (run["dag_id"], run["run_id"], run["new"]) == (
        "faye_deploy",
        f"hello-pr-{PR_WEBHOOK}-{sha[:7]}-gh-{delivery}",
        True,
    )
    # GitHub redelivers the same delivery: no second run
    assert {r["new"] for r in _webhook(stack, opened, secret, delivery).json()["runs"]} == {False}
    done = airflow_api.wait_run("faye_deploy", run["run_id"], timeout=600)
    assert done["state"] == "success", done
    [deployment], _ = _ours(_repo(stack), PR_WEBHOOK)
    assert deployment["statuses"][0]["state"] == "success"

    closed = {**opened, "action": "closed"}
    answer = _webhook(stack, closed, secret, str(uuid.uuid4()))
    assert answer.status_code == 202, answer.text
    [run] = [r for r in answer.json()["runs"] if r["run_id"].startswith(f"{SERVICE}-pr-")]
    assert run["dag_id"] == "faye_teardown"
    done = airflow_api.wait_run("faye_teardown", run["run_id"], timeout=300)
    assert done["state"] == "success" and done["note"].startswith("torn down"), done
    [deployment], [comment] = _ours(_repo(stack), PR_WEBHOOK)
    assert deployment["statuses"][0]["state"] == "inactive" and "torn down" in comment["body"]


def test_a_failed_deploy_is_reported_as_a_failure_naming_its_step(stack, airflow_api) -> None:
    repo = stack["sample_repo"]
    broken = subprocess.run(
        ["git", "-C", repo, "rev-parse", "broken"], capture_output=True, text=True, check=True
    ).stdout.strip()
    done, states = _run(airflow_api, "faye_deploy", {"service": SERVICE, "pr": PR_BROKEN, "git_sha": broken})
    assert done["state"] == "failed" and states["build.build_image"] == "failed", states
    assert states["report_outcome"] == "success", states
    [deployment], [comment] = _ours(_repo(stack), PR_BROKEN)
    newest = deployment["statuses"][0]
    assert newest["state"] == "failure", newest
    assert newest["description"].startswith("failed at build.build_image: "), newest
    assert newest["log_url"].endswith(f"/runs/{done['dag_run_id']}/tasks/build.build_image")
    assert "failed at build.build_image" in comment["body"] and broken[:7] in comment["body"]
    # no tests ran: no commit status for the broken commit
    assert not [s for s in _repo(stack)["statuses"] if s["url"].endswith(broken)]


PR_LOOP = 8150  # and up: a PR number the double has not seen, so opening it is `opened` on a kept stack too


def _delivered_run(stack: dict[str, Any], pr: int, action: str, seen: set[str]) -> dict[str, Any]:
    """The run faye made for the double's newest ``action`` delivery of PR ``pr`` not in ``seen``."""
    from faye_testing import wait_for

    def answered() -> dict[str, Any] | None:
        for delivery in reversed(_double(stack, "/_double/deliveries").json()):
            if delivery["id"] in seen or (delivery["number"], delivery["action"]) != (pr, action):
                continue
            if delivery["status"] is None and not delivery["error"]:
                return None
            assert delivery["status"] == 202, delivery
            seen.add(delivery["id"])
            [run] = [r for r in delivery["answer"]["runs"] if r["run_id"].startswith(f"{SERVICE}-pr-{pr}-")]
            return dict(run)
        return None

    return dict(wait_for(answered, f"the double's {action} webhook of PR {pr} answered", 60, every=0.5))


def test_the_double_delivers_the_pull_requests_life_to_faye(stack, airflow_api, shas, tmp_path) -> None:
    """No CI at all: a PR opened on the double deploys, a `git push` to its branch deploys the new head
    (the sample repository's post-receive hook tells the double, which sends `synchronize`), closing
    it tears the preview down; every event a signed webhook the double delivered itself."""
    newer, older = shas
    seen = {d["id"] for d in _double(stack, "/_double/deliveries").json()}
    pr = max([p["number"] for p in _repo(stack)["pulls"] if p["number"] >= PR_LOOP] + [PR_LOOP - 1]) + 1
    branch = f"feature-{pr}"
    opened = _double(
        stack,
        "/_double/pulls",
        method="POST",
        json={"repo": REPO, "number": pr, "head_sha": older, "head_ref": branch},
    )
    assert opened.status_code == 201, opened.text
    run = _delivered_run(stack, pr, "opened", seen)
    assert run["dag_id"] == "faye_deploy"
    done = airflow_api.wait_run("faye_deploy", run["run_id"], timeout=600)
    assert done["state"] == "success", done
    assert _outcome(airflow_api, run["run_id"])["sha"] == older

    # a push of the newer commit to the PR's branch, through git
    clone = tmp_path / "hello"
    subprocess.run(["git", "clone", "-q", stack["sample_repo"], str(clone)], check=True)
    pushed = subprocess.run(
        ["git", "-C", str(clone), "push", "origin", f"{newer}:refs/heads/{branch}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"pull request #{pr} moved to {newer[:7]}" in pushed.stderr, pushed.stderr
    run = _delivered_run(stack, pr, "synchronize", seen)
    done = airflow_api.wait_run("faye_deploy", run["run_id"], timeout=600)
    assert done["state"] == "success", done
    assert _outcome(airflow_api, run["run_id"])["sha"] == newer

    # closed through GitHub's API (as a person's click does)
    token = json.loads((Path(stack["state_dir"]) / "secrets.json").read_text())["github_token"]
    closed = _double(
        stack,
        f"/repos/{REPO}/pulls/{pr}",
        method="PATCH",
        json={"state": "closed"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert closed.status_code == 200, closed.text
    run = _delivered_run(stack, pr, "closed", seen)
    assert run["dag_id"] == "faye_teardown"
    done = airflow_api.wait_run("faye_teardown", run["run_id"], timeout=300)
    assert done["state"] == "success", done
    deployments, _ = _ours(_repo(stack), pr)
    assert deployments and {d["statuses"][0]["state"] for d in deployments} == {"inactive"}, deployments
