"""Trigger-to-success of faye_deploy when the image already exists, and the orchestration overhead.

    FAYE_HOME=$PWD/.faye FAYE_PORT_BASE=28700 uv run faye stack up
    FAYE_HOME=$PWD/.faye FAYE_PORT_BASE=28700 uv run python bench/bench_deploy.py [N]

PR 900 of ``hello`` is deployed alternately at the sample repository's HEAD and HEAD~1 (both images
are built once in a warm-up), so every measured run deploys a new revision, routes the slot and runs
the tests, and none builds. For each run:

* trigger-to-success: from the REST trigger to the run's ``end_date`` (Airflow's own clock);
* steps' own time: the sum, over every task that ran, of the time inside ``execute()`` (task-log
  timestamps from the end of "Pre Execute" to the start of "Post Execute", both halves of a deferred
  task) — the calls to Cloud Run, the registry, the proxy and the test server, plus a little Python;
* orchestration overhead = trigger-to-success - steps' own time: scheduling hops, task process
  start-up and DAG parsing, the executor, deferral hand-offs.

Also measured: the no-op (same sha again), where every write step is skipped.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from faye_plugin.hooks.airflow_api import AirflowApiClient
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.manager import Stack
from faye_plugin.stack.sample import head

DAG = "faye_deploy"
PR = 900


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def execute_seconds(client: AirflowApiClient, run_id: str, task_id: str, try_number: int) -> float:
    """Seconds spent inside execute() according to the task's log (summed over deferral halves)."""
    path = f"/dags/{DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}"
    content = client.request("GET", path).json().get("content", [])
    total, start, in_pre = 0.0, None, False
    for entry in content:
        event, stamp = str(entry.get("event", "")), entry.get("timestamp")
        if not stamp:
            continue
        if event == "::group::Pre Execute":
            in_pre = True
        elif event == "::endgroup::" and in_pre:
            in_pre, start = False, _ts(stamp)
        elif event == "::group::Post Execute" and start is not None:
            total += _ts(stamp) - start
            start = None
    return total


def one_run(client: AirflowApiClient, conf: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    run = client.trigger(DAG, conf)
    while (state := client.get_run(DAG, run.run_id).state) not in ("success", "failed"):
        time.sleep(0.5)
    if state != "success":
        raise SystemExit(f"run {run.run_id} ended {state}")
    data = client.request("GET", f"/dags/{DAG}/dagRuns/{quote(run.run_id, safe='')}").json()
    wall = _ts(data["end_date"]) - started
    steps, ran = 0.0, []
    for ti in client.task_instances(DAG, run.run_id):
        if ti.state == "success" and ti.try_number:
            seconds = execute_seconds(client, run.run_id, ti.task_id, ti.try_number)
            steps += seconds
            ran.append((ti.task_id, round(seconds, 2)))
    return {"run_id": run.run_id, "wall": wall, "steps": steps, "overhead": wall - steps, "tasks": ran}


def summary(label: str, rows: list[dict[str, Any]]) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    low, high = min(r["wall"] for r in rows), max(r["wall"] for r in rows)
    print(
        f"{label:<34} trigger-to-success median {med('wall'):6.1f} s  (min {low:.1f}, max {high:.1f})"
        f"  steps' own {med('steps'):5.1f} s"
        f"  orchestration overhead {med('overhead'):5.1f} s   n={len(rows)}"
    )


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    status = Stack(StackConfig.from_env()).status()
    if not status["healthy"]:
        raise SystemExit("the stack is not healthy: run `faye stack up`")
    client = AirflowApiClient(status["airflow_url"], status["airflow_username"], status["airflow_password"])
    shas = [head(Path(status["sample_repo"]), "HEAD~1"), head(Path(status["sample_repo"]))]
    print("warm-up: building/deploying both shas once ...", flush=True)
    for sha in shas:
        one_run(client, {"service": "hello", "pr": PR, "git_sha": sha})
    deploys, noops = [], []
    for i in range(runs):
        sha = shas[i % 2]
        deploys.append(one_run(client, {"service": "hello", "pr": PR, "git_sha": sha}))
        noops.append(one_run(client, {"service": "hello", "pr": PR, "git_sha": sha}))
        print(
            f"  run {i + 1}: deploy {deploys[-1]['wall']:.1f} s, no-op {noops[-1]['wall']:.1f} s", flush=True
        )
    print(f"load average at the end: {Path('/proc/loadavg').read_text().split()[:3]}")
    summary("deploy, image exists (new revision)", deploys)
    summary("same sha again (no-op)", noops)
    print("steps' own time per task (last deploy):", deploys[-1]["tasks"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
