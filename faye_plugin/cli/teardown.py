"""``faye teardown SERVICE PR`` (and, through cli/rollback.py, ``faye rollback SERVICE PR [--to REVISION]``):
validate locally,
trigger ``faye_teardown`` / ``faye_rollback`` through Airflow's REST API with a readable run id, follow
the run until it ends and print its outcome (the run note).
"""

from __future__ import annotations

import argparse
from typing import Any

from faye_plugin.airflow_rest import AirflowApiClient
from faye_plugin.cli._common import add_airflow_flags, airflow_client
from faye_plugin.params import ROLLBACK_DAG, TEARDOWN_DAG, validate_action
from faye_plugin.run_identity import action_run_id

ACTIONS = {TEARDOWN_DAG: "teardown", ROLLBACK_DAG: "rollback"}


def run_action(
    client: AirflowApiClient, dag_id: str, conf: dict[str, Any], *, wait: bool = True
) -> tuple[str, str]:
    """Validate ``conf``, trigger ``dag_id``, follow it; return (final state, the run's note)."""
    from faye_plugin.cli.deploy import failure_reasons, follow

    action = validate_action(dag_id, conf)
    run = client.trigger(dag_id, conf, run_id=action_run_id(ACTIONS[dag_id], action.service, action.pr))
    print(f"triggered {dag_id} run {run.run_id} for {action.service} PR {action.pr}", flush=True)
    if not wait:
        return run.state, ""
    state = follow(client, dag_id, run.run_id)
    if state == "failed":
        for reason in failure_reasons(client, dag_id, run.run_id):
            print(reason)
    return state, client.get_run(dag_id, run.run_id).note or ""


def run_command(args: argparse.Namespace) -> int:
    conf: dict[str, Any] = {"service": args.service, "pr": args.pr}
    if getattr(args, "to", None):
        conf["revision"] = args.to
    validate_action(args.dag_id, conf)  # before any network: every bad field at once
    state, note = run_action(airflow_client(args), args.dag_id, conf, wait=not args.no_wait)
    if note:
        print(note)
    if args.no_wait:
        return 0 if state in ("queued", "running", "success") else 1
    return 0 if state == "success" else 1


def add_action_arguments(parser: argparse.ArgumentParser, dag_id: str) -> None:
    """The arguments ``faye teardown`` and ``faye rollback`` share."""
    parser.add_argument("service", help="a service of the catalogue")
    parser.add_argument("pr", type=int, help="the pull request number")
    parser.add_argument("--no-wait", action="store_true", help="trigger and return at once")
    add_airflow_flags(parser)
    parser.set_defaults(func=run_command, dag_id=dag_id)


def register(subparsers: argparse._SubParsersAction) -> None:
    teardown = subparsers.add_parser(
        "teardown", help="remove a pull request's preview: route, tag, slot claim, record (faye_teardown)"
    )
    add_action_arguments(teardown, TEARDOWN_DAG)
