"""``faye queue [--json]``: the runs of faye_deploy / faye_build / faye_test waiting and running.

One line per active run: service, PR, sha, slot, the step it is at and what it waits for (a test
server, a slot, a running deploy of the same PR, the write lock, a worker). Everything comes from
Airflow's REST API. The API is found through ``--url/--user/--password``, else ``FAYE_AIRFLOW_URL``,
``FAYE_AIRFLOW_USER``, ``FAYE_AIRFLOW_PASSWORD``, else the local stack's status.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from faye_plugin.hooks.airflow_api import AirflowApiClient
from faye_plugin.queue import QUEUE_DAGS, QueueRow, RunInfo, TaskState, queue_rows

COLUMNS = ("dag_id", "run_id", "service", "pr", "sha", "slot", "priority", "step", "waiting_for")


def airflow_client(args: argparse.Namespace) -> AirflowApiClient:
    """The REST client for the flags, the environment, or the local stack (in that order)."""
    url = getattr(args, "url", None) or os.environ.get("FAYE_AIRFLOW_URL")
    user = getattr(args, "user", None) or os.environ.get("FAYE_AIRFLOW_USER")
    password = getattr(args, "password", None) or os.environ.get("FAYE_AIRFLOW_PASSWORD")
    if not url:
        from faye_plugin.stack.config import StackConfig
        from faye_plugin.stack.manager import Stack

        status = Stack(StackConfig.from_env()).status()
        url = status["airflow_url"]
        user = user or status.get("airflow_username")
        password = password or status.get("airflow_password")
    return AirflowApiClient(str(url), user, password)


def add_airflow_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="Airflow API base URL (env FAYE_AIRFLOW_URL; default: the local stack)")
    parser.add_argument("--user", help="Airflow user (env FAYE_AIRFLOW_USER)")
    parser.add_argument("--password", help="Airflow password (env FAYE_AIRFLOW_PASSWORD)")


def read_queue(client: AirflowApiClient, dag_ids: tuple[str, ...] = QUEUE_DAGS) -> list[QueueRow]:
    """The queue as rows: active runs of ``dag_ids`` with their task instances and the pools."""
    runs: list[RunInfo] = []
    for dag_id in dag_ids:
        runs.extend(client.list_active_runs(dag_id))
    tis: dict[str, list[TaskState]] = {r.run_id: client.task_instances(r.dag_id, r.run_id) for r in runs}
    pools: dict[str, dict[str, Any]] = client.pools()
    rows = queue_rows(runs, tis, pools)
    return [_with_slot(client, row, tis.get(row.run_id, [])) for row in rows]


def _with_slot(client: AirflowApiClient, row: QueueRow, tis: list[TaskState]) -> QueueRow:
    """Fill in the slot chosen by ``release_slot`` when the request did not name one."""
    if row.slot or row.dag_id != "faye_deploy":
        return row
    if not any(ti.task_id == "release_slot" and ti.state == "success" for ti in tis):
        return row
    value = client.xcom(row.dag_id, row.run_id, "release_slot")
    slot = value.get("slot") if isinstance(value, dict) else value if isinstance(value, str) else None
    if not slot:
        return row
    return QueueRow(**{**row.as_dict(), "slot": str(slot)})


def format_table(rows: list[QueueRow]) -> str:
    if not rows:
        return "no runs waiting or running"
    cells = [[str(v if v is not None else "-") for v in (getattr(r, c) for c in COLUMNS)] for r in rows]
    for cell in cells:
        cell[4] = cell[4][:7]  # sha
        cell[8] = cell[8] or "-"
    header = [c.replace("_", " ") for c in COLUMNS]
    widths = [max(len(x) for x in col) for col in zip(header, *cells, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(x.ljust(w) for x, w in zip(cell, widths, strict=True)).rstrip() for cell in cells]
    return "\n".join(lines)


def _queue(args: argparse.Namespace) -> int:
    rows = read_queue(airflow_client(args), tuple(args.dag) if args.dag else QUEUE_DAGS)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=1))
    else:
        print(format_table(rows))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "queue",
        help="runs waiting and running, and what each one waits for",
        description="Lists the active runs of faye_deploy, faye_build and faye_test through the REST API.",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.add_argument("--dag", action="append", help="only this DAG (repeatable)")
    add_airflow_flags(parser)
    parser.set_defaults(func=_queue)
