"""``faye demo``: deploy the sample service ``hello`` for PR 1 at the sample repository's HEAD, follow
the run step by step, then fetch the preview through the proxy and print its URL and answer, and the
comment faye left on the PR on the stack's GitHub double (the PR is opened there first).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from faye_plugin.cli.stack import print_status
from faye_plugin.hooks.airflow_api import AirflowApiClient
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.manager import Stack

SERVICE = "hello"
DEPLOY_DAG = "faye_deploy"


def fetch_through_proxy(proxy_url: str, preview_url: str, timeout: float = 10.0) -> requests.Response:
    """GET the preview's public URL by connecting to the proxy with the slot's Host header.

    ``<slot>.preview.localhost`` does not resolve everywhere, so the demo connects to the proxy's
    address itself, as a browser would after resolving the name.
    """
    host = urlsplit(preview_url).netloc
    path = urlsplit(preview_url).path or "/"
    return requests.get(f"{proxy_url.rstrip('/')}{path}", headers={"Host": host}, timeout=timeout)


def open_pull_request(github: str, repo: str, pr: int, sha: str, timeout: float = 60.0) -> str | None:
    """Open PR ``pr`` at ``sha`` on the GitHub double, which delivers the signed ``pull_request`` webhook
    to faye; return the faye_deploy run the webhook triggered (None: no event was sent, e.g. the PR is
    open at that sha already, or the webhook started no deploy within ``timeout``)."""

    def deliveries() -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = requests.get(f"{github}/_double/deliveries", timeout=10).json()
        return answer

    before = {d["id"] for d in deliveries()}
    pull = {"repo": repo, "number": pr, "head_sha": sha, "head_ref": "main"}
    requests.post(f"{github}/_double/pulls", json=pull, timeout=10).raise_for_status()
    print(f"opened PR {pr} of {repo} on the GitHub double ({github})")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # the double records a delivery before it answers the POST: none now means no event
        new = [d for d in deliveries() if d["id"] not in before and d["number"] == pr]
        if not new:
            return None
        delivery = new[-1]
        if delivery["status"] is None and not delivery["error"]:
            time.sleep(0.5)  # sent, not answered yet
            continue
        runs = (delivery.get("answer") or {}).get("runs") or []
        found = [str(r["run_id"]) for r in runs if r.get("dag_id") == DEPLOY_DAG]
        if not found:
            why = delivery["error"] or delivery["answer"]
            print(f"the {delivery['action']} webhook was answered {delivery['status']}: {why}")
        return found[0] if found else None
    return None


def _demo(args: argparse.Namespace) -> int:
    from faye_plugin.cli.deploy import deploy, follow
    from faye_plugin.stack.sample import head

    status = Stack(StackConfig.from_env()).status()
    print_status(status)
    if not status["healthy"]:
        print("the stack is not healthy: run `faye stack up` first")
        return 1
    sha = head(Path(status["sample_repo"]))
    github = status.get("github_url")
    client = AirflowApiClient(status["airflow_url"], status["airflow_username"], status["airflow_password"])
    run_id = open_pull_request(github, status["github_repo"], args.pr, sha) if github else None
    if run_id is not None:
        # GitHub's webhook started the deploy, as it would for a real pull request
        print(f"the pull_request webhook triggered {DEPLOY_DAG} run {run_id}")
        state = follow(client, DEPLOY_DAG, run_id)
        outcome = client.xcom(DEPLOY_DAG, run_id, "preview_url") if state == "success" else None
    else:
        state, outcome = deploy(client, {"service": SERVICE, "pr": args.pr, "git_sha": sha})
    if state != "success" or not outcome:
        print(f"the deploy ended {state}: see `faye logs` or the Airflow UI at {status['airflow_url']}")
        return 1
    answer = fetch_through_proxy(status["proxy_url"], outcome["slot_url"])
    print(f"\npreview URL: {outcome['slot_url']}")
    print(f"  revision {outcome['revision']} (tag {outcome['tag']}, {outcome['url']})")
    print(f"  GET {outcome['slot_url']} -> HTTP {answer.status_code}: {answer.text.strip()[:300]}")
    if answer.status_code != 200 or sha not in answer.text:
        print(f"the preview did not answer with {sha}")
        return 1
    print(f"the preview answers with {sha}")
    if github:
        print_comment(github, status["github_repo"], args.pr)
    return 0


def print_comment(github_url: str, repo: str, pr: int) -> None:
    """Print faye's comment on the PR as the double holds it (GitHub would render its Markdown)."""
    from faye_plugin.hooks.github import marker

    state = requests.get(f"{github_url}/_double/state", timeout=10).json().get(repo, {})
    ours = [
        c["body"]
        for c in state.get("comments", [])
        if c["issue_url"].endswith(f"/issues/{pr}") and marker(SERVICE) in c["body"]
    ]
    if not ours:
        print(f"no faye comment on PR {pr} yet (see the run's report_outcome task)")
        return
    print(f"\nthe comment on PR {pr} ({repo}):\n")
    print(ours[0])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="deploy the sample service for PR 1 and print its preview URL"
    )
    parser.add_argument("--pr", type=int, default=1, help="the pull request number (default 1)")
    parser.set_defaults(func=_demo)
