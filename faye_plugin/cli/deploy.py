"""``faye deploy``: validate a preview request locally (every problem at once), trigger faye_deploy
through Airflow's REST API, and follow the run until it ends, printing each step's state as it changes.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from faye_plugin.airflow_rest import AirflowApiClient
from faye_plugin.cli._common import add_airflow_flags, airflow_client
from faye_plugin.params import validate_request
from faye_plugin.run_identity import run_id_for

DEPLOY_DAG = "faye_deploy"
FINISHED = ("success", "failed")


def follow(
    client: AirflowApiClient, dag_id: str, run_id: str, *, timeout: float = 1800, poll: float = 1.0
) -> str:
    """Print each task's state as it changes until the run ends; return the run's final state."""
    started = time.monotonic()
    seen: dict[str, str | None] = {}
    while True:
        tis = client.task_instances(dag_id, run_id)
        for ti in sorted(tis, key=lambda t: t.start_date.timestamp() if t.start_date else float("inf")):
            key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            if seen.get(key, "-") != ti.state and ti.state is not None:
                seen[key] = ti.state
                print(f"  {time.monotonic() - started:7.1f}s  {key:<28} {ti.state}", flush=True)
        state = client.get_run(dag_id, run_id).state
        if state in FINISHED:
            print(f"  {time.monotonic() - started:7.1f}s  run {run_id}: {state}", flush=True)
            return state
        if time.monotonic() - started > timeout:
            print(f"  still {state} after {timeout:.0f}s; not waiting any longer", file=sys.stderr)
            return state
        time.sleep(poll)


def deploy(client: AirflowApiClient, conf: dict[str, Any], *, wait: bool = True) -> tuple[str, Any]:
    """Validate ``conf``, trigger faye_deploy, follow it; return (final state, preview_url's outcome)."""
    request = validate_request(conf)
    run = client.trigger(DEPLOY_DAG, conf, run_id=run_id_for(request.service, request.pr, request.git_sha))
    print(
        f"triggered {DEPLOY_DAG} run {run.run_id} for {request.service} PR {request.pr} at {request.git_sha}"
    )
    if not wait:
        return run.state, None
    state = follow(client, DEPLOY_DAG, run.run_id)
    if state == "failed":
        for reason in failure_reasons(client, DEPLOY_DAG, run.run_id):
            print(reason)
    outcome = client.xcom(DEPLOY_DAG, run.run_id, "preview_url") if state == "success" else None
    return state, outcome


def failure_reasons(client: AirflowApiClient, dag_id: str, run_id: str) -> list[str]:
    """Why each failed task of the run failed (``faye logs`` shows the whole story).

    The one line ``task_errors`` kept as the XCom ``faye_error``, else the last error the task logged
    other than Airflow's own closing ``Task exited`` line.
    """
    from faye_plugin.cli.logs import RunLogs
    from faye_plugin.task_errors import REASON_KEY

    logs = RunLogs(client, dag_id, run_id)
    reasons: list[str] = []
    for task_id, ti in logs.task_instances().items():
        tries = ti.try_number
        if ti.state != "failed" or tries == 0:
            continue
        kept = client.xcom(dag_id, run_id, task_id, key=REASON_KEY)
        if isinstance(kept, str) and kept:
            reasons.append(f"{task_id} failed: {kept}")
            continue
        errors = [
            line
            for line in logs.read_new(task_id, tries, finished=True)
            if line.startswith("ERROR") and not line.startswith("ERROR Task exited")
        ]
        if errors:
            reasons.append(f"{task_id} failed: {errors[-1].removeprefix('ERROR ')}")
    return reasons


def conf_from_args(args: argparse.Namespace) -> dict[str, Any]:
    conf: dict[str, Any] = {"service": args.service, "pr": args.pr, "git_sha": args.sha}
    for key in ("slot", "ttl_hours", "priority"):
        value = getattr(args, key, None)
        if value is not None:
            conf[key] = value
    if getattr(args, "force_build", False):
        conf["force_build"] = True
    return conf


def _deploy(args: argparse.Namespace) -> int:
    conf = conf_from_args(args)
    validate_request(conf)  # before any network: every bad field at once
    state, outcome = deploy(airflow_client(args), conf, wait=not args.no_wait)
    if outcome:
        print(
            f"preview: {outcome.get('slot_url')}  "
            f"(tag URL {outcome.get('url')}, revision {outcome.get('revision')})"
        )
    return 0 if state in ("success", "queued", "running") and (args.no_wait or state == "success") else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("deploy", help="deploy a preview of one pull request (faye_deploy)")
    parser.add_argument("--service", required=True, help="a service of the catalogue")
    parser.add_argument("--pr", required=True, type=int, help="the pull request number")
    parser.add_argument("--sha", required=True, help="the commit (prefer the full 40-hex sha)")
    parser.add_argument("--slot", help="a slot of the service (default: the PR's own, else a free one)")
    parser.add_argument("--ttl-hours", dest="ttl_hours", type=int, help="hours the preview lives")
    parser.add_argument("--force-build", action="store_true", help="build even if the image exists")
    parser.add_argument("--priority", type=int, help="queue priority 0..100")
    parser.add_argument("--no-wait", action="store_true", help="trigger and return at once")
    add_airflow_flags(parser)
    parser.set_defaults(func=_deploy)
