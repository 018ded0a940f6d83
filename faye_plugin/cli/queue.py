"""``faye queue [--json]``: the runs of faye_deploy / faye_build / faye_test waiting and running.

One line per active run: service, PR, sha, slot, the step it is at and what it waits for (a test
server, a slot, a running deploy of the same PR, a worker). Everything comes from
Airflow's REST API, found as every command finds it (``cli/_common``: ``--url``, the
``FAYE_AIRFLOW_*`` variables, the local stack).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from faye_plugin.airflow_rest import AirflowApiClient
from faye_plugin.cli._common import add_airflow_flags, airflow_client
from faye_plugin.queue import (
    QUEUE_DAGS,
    SAFE_POINT_TASK_ID,
    TEST_SERVERS_POOL,
    RunInfo,
    TaskState,
    in_critical_section,
    same_preview,
)

COLUMNS = ("dag_id", "run_id", "service", "pr", "sha", "slot", "priority", "step", "waiting_for")


@dataclass(frozen=True)
class QueueRow:
    """One line of ``faye queue``."""

    dag_id: str
    run_id: str
    state: str
    service: str | None
    pr: int | None
    sha: str | None
    slot: str | None
    priority: int
    step: str
    waiting_for: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "state": self.state,
            "service": self.service,
            "pr": self.pr,
            "sha": self.sha,
            "slot": self.slot,
            "priority": self.priority,
            "step": self.step,
            "waiting_for": self.waiting_for,
        }


#: The states of a task that holds no test server yet (the pool's queue, or a deferral until one is free).
TEST_SERVER_WAITS = frozenset({"scheduled", "queued", "deferred", "up_for_reschedule"})


def current_step(tis: Sequence[TaskState]) -> TaskState | None:
    """The task a run is at: a running one, else one waiting (deferred, rescheduled, queued, scheduled)."""
    rank = {
        "running": 0,
        "deferred": 1,
        "up_for_reschedule": 2,
        "up_for_retry": 3,
        "queued": 4,
        "scheduled": 5,
    }
    started = [ti for ti in tis if ti.state in rank]
    if not started:
        return None
    # A test waiting for a test server is what the run waits on, even while a side task (preview_url,
    # which runs beside the Test group) is running: the row's step and its "waiting for" agree.
    pooled = [ti for ti in started if ti.pool == TEST_SERVERS_POOL and ti.state in TEST_SERVER_WAITS]
    if pooled:
        started = pooled
    return min(
        started, key=lambda ti: (rank[str(ti.state)], ti.start_date or datetime.max.replace(tzinfo=None))
    )


def waiting_for(
    run: RunInfo,
    tis: Sequence[TaskState],
    others: Iterable[RunInfo],
    others_tis: Mapping[str, Sequence[TaskState]],
    pools: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """What a run waits for, in words; "" when it is simply running a step."""
    pools = pools or {}
    if run.state == "queued":
        return "its turn to start (the DAG's active-run limit)"
    states = {ti.task_id: ti.state for ti in tis}
    step = current_step(tis)
    # A still_newest that is running again (it looks once per pause) is still waiting as its note says.
    if states.get(SAFE_POINT_TASK_ID) in {"up_for_reschedule", "deferred", "running"} or (
        step is not None and step.task_id == SAFE_POINT_TASK_ID and step.state in {"scheduled", "queued"}
    ):
        # still_newest writes why it waits into the run note ("waiting for a slot: ...").
        if run.note and run.note.startswith("waiting for "):
            return run.note.removeprefix("waiting for ")
        for other in others:
            if (
                other.active
                and same_preview(run, other)
                and other.order_key < run.order_key
                and in_critical_section(others_tis.get(other.run_id, ()))
            ):
                return f"a running deploy of PR {run.pr} ({other.run_id})"
    if any(ti.pool == TEST_SERVERS_POOL and ti.state in TEST_SERVER_WAITS for ti in tis):
        return "a test server"
    if step is None:
        return ""
    if step.task_id.endswith("release_slot") and step.state in {
        "up_for_reschedule",
        "deferred",
        "up_for_retry",
    }:
        return "a slot"
    if step.pool and step.state in {"scheduled", "queued"}:
        pool = pools.get(step.pool, {})
        if pool and pool.get("open_slots", 1) <= 0:
            return f"a slot in pool {step.pool}"
    if step.state in {"scheduled", "queued"}:
        return "a worker"
    return ""


def queue_rows(
    runs: Sequence[RunInfo],
    tis_by_run: Mapping[str, Sequence[TaskState]],
    pools: Mapping[str, Mapping[str, int]] | None = None,
) -> list[QueueRow]:
    """The rows of ``faye queue``: active runs, highest priority first, then in trigger order."""
    rows = []
    for run in sorted((r for r in runs if r.active), key=lambda r: (-r.priority, r.order_key)):
        tis = list(tis_by_run.get(run.run_id, ()))
        step = current_step(tis)
        rows.append(
            QueueRow(
                dag_id=run.dag_id,
                run_id=run.run_id,
                state=run.state,
                service=run.service,
                pr=run.pr,
                sha=run.git_sha,
                slot=run.slot,
                priority=run.priority,
                step=f"{step.task_id} ({step.state})"
                if step
                else ("-" if run.state == "queued" else "between steps"),
                waiting_for=waiting_for(run, tis, runs, tis_by_run, pools),
            )
        )
    return rows


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
