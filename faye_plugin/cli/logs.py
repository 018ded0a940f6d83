"""``faye logs <run id> [--dag DAG] [--follow]``: a run's task logs in task order, through the REST API.

Tasks are printed in topological order (ties by start time), each line as ``[task_id] line``. With
``--follow`` the command keeps polling the running tasks' logs with the API's ``continuation_token``
and returns when the run has ended and every log is read to its end. The API is found as every
command finds it (``cli/_common``: ``--url``, the ``FAYE_AIRFLOW_*`` variables, the local stack).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from faye_plugin.cli._common import add_airflow_flags, airflow_client
from faye_plugin.exceptions import AirflowApiError

if TYPE_CHECKING:
    from faye_plugin.airflow_rest import AirflowApiClient
    from faye_plugin.queue import TaskState

REQUEST_DAGS = ("faye_deploy", "faye_build", "faye_test", "faye_cleanup", "faye_teardown", "faye_rollback")
RUN_DONE = frozenset({"success", "failed"})
TI_DONE = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


def task_order(downstream: dict[str, list[str]], started: dict[str, datetime | None]) -> list[str]:
    """Order tasks topologically; among tasks ready at once, the one that started first comes first
    (never-started tasks last, then by id)."""
    upstream_count = dict.fromkeys(downstream, 0)
    for children in downstream.values():
        for child in children:
            if child in upstream_count:
                upstream_count[child] += 1

    def key(task_id: str) -> tuple[int, float, str]:
        start = started.get(task_id)
        return (start is None, start.timestamp() if start else 0.0, task_id)

    ready = sorted((t for t, n in upstream_count.items() if n == 0), key=key)
    order: list[str] = []
    while ready:
        task_id = ready.pop(0)
        order.append(task_id)
        for child in downstream.get(task_id, []):
            if child in upstream_count:
                upstream_count[child] -= 1
                if upstream_count[child] == 0:
                    ready.append(child)
        ready.sort(key=key)
    return order + sorted(set(downstream) - set(order))


def format_entry(entry: Any) -> str | None:
    """Return the printable text of one structured log entry, or None for Airflow's own markers.

    Dropped: the UI's ``::group::``/``::endgroup::`` folding markers and the "log message source"
    listing (entries with neither timestamp nor level, repeated with every read of a running task).
    """
    if isinstance(entry, str):
        return entry
    if not isinstance(entry, dict):
        return str(entry)
    event = str(entry.get("event", ""))
    if event.startswith(("::group::", "::endgroup::")) or "sources" in entry:
        return None
    if "timestamp" not in entry and "level" not in entry:
        return None
    level = str(entry.get("level") or "info").lower()
    for detail in entry.get("error_detail") or []:
        if isinstance(detail, dict) and detail.get("exc_type"):
            event += f": {detail['exc_type']}: {detail.get('exc_value', '')}"
    return event if level in ("info", "debug") else f"{level.upper()} {event}"


@dataclass
class _LogCursor:
    token: str | None = None
    done: bool = False
    lines: int = field(default=0)


class RunLogs:
    """Read a run's task logs incrementally (one cursor per task and try)."""

    def __init__(self, client: AirflowApiClient, dag_id: str, run_id: str) -> None:
        self.client = client
        self.dag_id = dag_id
        self.run_id = run_id
        self.cursors: dict[tuple[str, int], _LogCursor] = {}
        self._downstream: dict[str, list[str]] | None = None

    def downstream(self) -> dict[str, list[str]]:
        if self._downstream is None:
            self._downstream = self.client.dag_tasks(self.dag_id)
        return self._downstream

    def run_state(self) -> str:
        return self.client.get_run(self.dag_id, self.run_id).state

    def task_instances(self) -> dict[str, TaskState]:
        """The run's task instances by task id (mapped ones left out)."""
        return {
            ti.task_id: ti for ti in self.client.task_instances(self.dag_id, self.run_id) if ti.map_index < 0
        }

    def read_new(self, task_id: str, try_number: int, finished: bool) -> list[str]:
        """Return the lines of ``task_id``'s try logged since the last call."""
        cursor = self.cursors.setdefault((task_id, try_number), _LogCursor())
        if cursor.done:
            return []
        entries, next_token = self.client.task_log(
            self.dag_id, self.run_id, task_id, try_number, cursor.token
        )
        lines = [text for e in entries if (text := format_entry(e)) is not None]
        cursor.lines += len(lines)
        if next_token:
            cursor.token = next_token
        elif finished:
            cursor.done = True
        return lines

    def poll(self, emit: Callable[[str], None]) -> bool:
        """Print what is new for every started task, in task order; return True when all is read."""
        tis = self.task_instances()
        started = {t: ti.start_date for t, ti in tis.items()}
        all_done = True
        for task_id in task_order(self.downstream(), started):
            ti = tis.get(task_id)
            tries = ti.try_number if ti else 0
            state = ti.state if ti else None
            finished_ti = state in TI_DONE
            if tries == 0:
                all_done = all_done and (finished_ti or state is None)
                continue
            for attempt in range(1, tries + 1):
                finished = finished_ti or attempt < tries
                label = task_id if attempt == 1 else f"{task_id} (try {attempt})"
                for line in self.read_new(task_id, attempt, finished):
                    emit(f"[{label}] {line}")
                all_done = all_done and self.cursors[(task_id, attempt)].done
        return all_done


def find_dag(client: AirflowApiClient, run_id: str, dags: tuple[str, ...] = REQUEST_DAGS) -> str:
    """Return the first of ``dags`` that has a run ``run_id``."""
    for dag_id in dags:
        if client.find_run(dag_id, run_id) is not None:
            return dag_id
    raise AirflowApiError(f"no run {run_id!r} in {', '.join(dags)}: pass --dag")


def follow_logs(
    client: AirflowApiClient,
    dag_id: str,
    run_id: str,
    *,
    follow: bool,
    out: TextIO = sys.stdout,
    poll_interval: float = 1.0,
) -> str:
    """Print the run's logs (following them until the run ends if ``follow``); return the run state."""
    logs = RunLogs(client, dag_id, run_id)

    def emit(line: str) -> None:
        print(line, file=out, flush=True)

    while True:
        state = logs.run_state()  # read before the logs: a run seen ended has nothing more to log
        complete = logs.poll(emit)
        if not follow or (state in RUN_DONE and complete):
            return state
        time.sleep(poll_interval)


def _logs(args: argparse.Namespace) -> int:
    client = airflow_client(args)
    dag_id = args.dag or find_dag(client, args.run_id)
    state = follow_logs(client, dag_id, args.run_id, follow=args.follow, poll_interval=args.interval)
    if args.follow:
        print(f"run {dag_id}/{args.run_id}: {state}", file=sys.stderr)
    return 0 if state != "failed" else 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "logs",
        help="print a run's task logs in task order (--follow: until the run ends)",
        description="Reads /api/v2/.../logs, polling with the continuation token while tasks run.",
    )
    parser.add_argument("run_id", help="the DAG run id")
    parser.add_argument(
        "--dag", help=f"the DAG (default: the one of {', '.join(REQUEST_DAGS)} with this run)"
    )
    parser.add_argument("--follow", "-f", action="store_true", help="follow running tasks until the run ends")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    add_airflow_flags(parser)
    parser.set_defaults(func=_logs)
