"""``faye demo``: deploy the sample service ``hello`` for PR 1 at the sample repository's HEAD, follow
the run step by step, then fetch the preview through the proxy and print its URL and answer, and the
comment faye left on the PR on the stack's GitHub double (the PR is opened there first).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

import requests

from faye_plugin.cli.stack import print_status
from faye_plugin.hooks.airflow_api import AirflowApiClient
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.manager import Stack

SERVICE = "hello"


def fetch_through_proxy(proxy_url: str, preview_url: str, timeout: float = 10.0) -> requests.Response:
    """GET the preview's public URL by connecting to the proxy with the slot's Host header.

    ``<slot>.preview.localhost`` does not resolve everywhere, so the demo connects to the proxy's
    address itself, as a browser would after resolving the name.
    """
    host = urlsplit(preview_url).netloc
    path = urlsplit(preview_url).path or "/"
    return requests.get(f"{proxy_url.rstrip('/')}{path}", headers={"Host": host}, timeout=timeout)


def _demo(args: argparse.Namespace) -> int:
    from faye_plugin.cli.deploy import deploy
    from faye_plugin.stack.sample import head

    status = Stack(StackConfig.from_env()).status()
    print_status(status)
    if not status["healthy"]:
        print("the stack is not healthy: run `faye stack up` first")
        return 1
    sha = head(Path(status["sample_repo"]))
    github = status.get("github_url")
    if github:
        pull = {"repo": status["github_repo"], "number": args.pr, "head_sha": sha, "head_ref": "main"}
        requests.post(f"{github}/_double/pulls", json=pull, timeout=10).raise_for_status()
        print(f"opened PR {args.pr} of {status['github_repo']} on the GitHub double ({github})")
    client = AirflowApiClient(status["airflow_url"], status["airflow_username"], status["airflow_password"])
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
