"""``faye stack up | down | status [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.manager import Stack


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def print_status(status: dict[str, Any]) -> None:
    """Print what runs where, one part a line."""
    health = status["health"]
    rows = [
        ("Airflow", status["airflow_url"], health.get("airflow", "-")),
        ("  user / password", f"{status['airflow_username']} / {status['airflow_password']}", ""),
        ("preview proxy", status["proxy_public_url"], health.get("proxy", "-")),
        ("proxy admin API", status["proxy_admin_url"], health.get("proxy", "-")),
        ("registry", status["registry_url"], health.get("registry", "-")),
        ("Cloud Run emulator", status["cloud_run_url"], health.get("cloud_run", "-")),
        (
            f"GitHub API double ({status.get('github_repo')})",
            status.get("github_url", "-"),
            health.get("github", "-"),
        ),
        ("builder (Docker API)", status["build_docker_url"], health.get("docker_build", "-")),
        ("revision runner (Docker API)", status["run_docker_url"], health.get("docker_run", "-")),
    ]
    for i, url in enumerate(status["test_docker_urls"], start=1):
        name = f"test-{i}"  # the stack names its test servers test-1, test-2, ... (unix or tcp)
        rows.append((f"test server {name}", url, health.get(f"docker_{name}", "-")))
    rows += [
        ("sample repository", status["sample_repo"], ""),
        ("catalogue", status["catalogue"], ""),
        ("state folder", status["state_dir"], ""),
    ]
    for key, value in health.items():
        if key.startswith("airflow_"):
            rows.append((f"  {key.removeprefix('airflow_')}", "", value))
    width = max(len(r[0]) for r in rows)
    for name, where, state in rows:
        print(f"{name:<{width}}  {where:<58} {state}".rstrip())
    print("all parts healthy" if status["healthy"] else "NOT all parts are healthy")


def _up(args: argparse.Namespace) -> int:
    status = Stack(StackConfig.from_env(), say=_say).up()
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        print_status(status)
    return 0 if status["healthy"] else 1


def _down(args: argparse.Namespace) -> int:
    stopped = Stack(StackConfig.from_env(), say=_say).down()
    print(f"stopped {len(stopped)} process(es)" if stopped else "nothing of this stack was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = Stack(StackConfig.from_env()).status()
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        print_status(status)
    return 0 if status["healthy"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="the local stack (Airflow, podman hosts, registry, Caddy, Cloud Run emulator)",
        description="State folder: $FAYE_HOME (default ./.faye). Ports: FAYE_PORT_BASE (default 28700).",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = sub.add_parser("up", help="install what is missing, start what is not running, wait until healthy")
    up.add_argument("--json", action="store_true", help="print the status as one JSON object")
    up.set_defaults(func=_up)
    down = sub.add_parser("down", help="stop every process this stack started")
    down.set_defaults(func=_down)
    status = sub.add_parser("status", help="what runs where, and whether it answers")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(func=_status)
