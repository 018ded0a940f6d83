"""faye_deploy next to the engine's own floor, measured side by side in one run on one stack.

    FAYE_PORT_BASE=29600 uv run python bench/bench_deploy.py [--runs 3] [--keep]

A stack of its own (``.faye-bench-deploy``, LocalExecutor on SQLite, ports from ``FAYE_PORT_BASE``,
default 29600) whose DAG folder is ``dags/`` plus the yardsticks of bench/benchstack.py, and two
services added to its catalogue: ``bench1`` and ``bench200``, both the sample service ``hello`` under
another Cloud Run name. ``bench200`` gets 199 more (unexpired, slot-less) previews seeded in faye's
state format after the warm-up, so it holds 200 previews; ``bench1`` holds only the measured one.
``faye_cleanup`` is paused for the run. Each round, in this order:

* one-task DAG and ten-task chain: trigger -> the run's ``end_date`` (the engine's floor and its cost
  per hop);
* cached deploy: PR 900 of ``bench1`` at the other of the sample repository's two shas (both images
  built in the warm-up), so it deploys a new revision, routes the slot, runs the tests, builds nothing;
* no-op: the same again (that sha is served already);
* cached deploy of PR 900 on ``bench200`` (the 200-preview service), as for ``bench1``.

For each deploy also: the calls it made to Cloud Run (the emulator counts every RPC,
``/_emulator/calls``), and the steps' own time (inside ``execute()``, from the task logs) against the
rest (orchestration: scheduling hops, task start-up, DAG parsing). Prints a Markdown table of medians
and ratios, and the steps' own time per task of the last cached deploy.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from bench_emulator_scale import clients, seed_previews
from benchstack import REPO, add_service, faye, prepare

from faye_plugin.airflow_rest import AirflowApiClient
from faye_plugin.exceptions import AirflowApiError

DAG = "faye_deploy"
PR = 900
SMALL, BIG = "bench1", "bench200"
BIG_PREVIEWS = 200
PARENT = "projects/local/locations/europe-west1"


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def stack_env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base.setdefault("PYTHONPYCACHEPREFIX", str(REPO / ".cache" / "pycache"))
    home = REPO / ".faye-bench-deploy"
    return base | {
        "FAYE_HOME": str(home),
        "FAYE_PORT_BASE": os.environ.get("FAYE_PORT_BASE", "29600"),
        "FAYE_DAGS_FOLDER": str(home / "dags"),
    }


def execute_seconds(
    client: AirflowApiClient, dag_id: str, run_id: str, task_id: str, try_number: int
) -> float:
    """Seconds spent inside execute() according to the task's log (summed over deferral halves)."""
    path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}"
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


class Bench:
    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self.client = AirflowApiClient(
            status["airflow_url"], status["airflow_username"], status["airflow_password"]
        )
        self.calls_url = f"{status['cloud_run_url']}/_emulator/calls"

    def run(self, dag_id: str, conf: dict[str, Any]) -> tuple[str, float]:
        """Trigger ``dag_id`` and wait: its run id and trigger -> ``end_date`` in seconds."""
        started = time.time()
        run = self.client.trigger(dag_id, conf)
        while (state := self.client.get_run(dag_id, run.run_id).state) not in ("success", "failed"):
            time.sleep(0.2)
        if state != "success":
            raise SystemExit(f"{dag_id} run {run.run_id} ended {state}")
        data = self.client.request("GET", f"/dags/{dag_id}/dagRuns/{quote(run.run_id, safe='')}").json()
        return run.run_id, _ts(data["end_date"]) - started

    def deploy(self, service: str, sha: str) -> dict[str, Any]:
        requests.delete(self.calls_url, timeout=10)
        run_id, wall = self.run(DAG, {"service": service, "pr": PR, "git_sha": sha})
        calls = requests.delete(self.calls_url, timeout=10).json()["calls"]
        steps, ran = 0.0, []
        for ti in self.client.task_instances(DAG, run_id):
            if ti.state == "success" and ti.try_number:
                seconds = execute_seconds(self.client, DAG, run_id, ti.task_id, ti.try_number)
                steps += seconds
                ran.append((ti.task_id, round(seconds, 2)))
        return {
            "wall": wall,
            "steps": steps,
            "overhead": wall - steps,
            "reads": calls.get("GetService", 0),
            "writes": calls.get("UpdateService", 0) + calls.get("CreateService", 0),
            "tasks": ran,
        }


def seed_big_service(status: dict[str, Any]) -> None:
    """Give ``bench200`` 199 more previews (slot-less, a week from expiry) beside PR 900's."""
    client = clients(status, "rest")
    service = client.get_service(name=f"{PARENT}/services/{BIG}")
    week = int(time.time()) + 7 * 24 * 3600
    seed_previews(client, service, range(PR + 1, PR + BIG_PREVIEWS), expires=week)


def main() -> int:
    rounds = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3
    env = stack_env()
    prepare(env)
    try:
        status = json.loads(faye(env, "stack", "up", "--json"))
        add_service(Path(status["catalogue"]), SMALL, ["d1"])
        add_service(Path(status["catalogue"]), BIG, ["d2"])
        measure(Bench(status), rounds)
    finally:
        if "--keep" not in sys.argv:
            faye(env, "stack", "down")
    return 0


def measure(bench: Bench, rounds: int) -> None:
    status = bench.status
    for attempt in range(1, 6):  # right after `up` SQLite may answer "database is locked" (HTTP 500)
        try:
            bench.client.set_paused("faye_cleanup", True)
            break
        except AirflowApiError:
            if attempt == 5:
                raise
            time.sleep(2 * attempt)
    shas = subprocess.run(
        ["git", "-C", status["sample_repo"], "log", "--format=%H", "-2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    print("warm-up: both images built, each service deployed at both shas ...", flush=True)
    for service in (SMALL, BIG):
        for sha in shas:
            bench.deploy(service, sha)
    seed_big_service(status)
    bench.run("faye_bench_one", {})
    bench.run("faye_bench_chain", {})
    print(f"load average at start: {os.getloadavg()}", flush=True)
    one: list[float] = []
    chain: list[float] = []
    cached: list[dict[str, Any]] = []
    noop: list[dict[str, Any]] = []
    big: list[dict[str, Any]] = []
    for i in range(rounds):
        sha = shas[i % 2]  # the warm-up ended on shas[1]
        one.append(bench.run("faye_bench_one", {})[1])
        chain.append(bench.run("faye_bench_chain", {})[1])
        cached.append(bench.deploy(SMALL, sha))
        noop.append(bench.deploy(SMALL, sha))
        big.append(bench.deploy(BIG, sha))
        print(
            f"  round {i + 1}: one-task {one[-1]:.1f} s, chain {chain[-1]:.1f} s, cached deploy "
            f"{cached[-1]['wall']:.1f} s, no-op {noop[-1]['wall']:.1f} s, "
            f"{BIG_PREVIEWS} previews {big[-1]['wall']:.1f} s",
            flush=True,
        )
    print(f"load average at end: {os.getloadavg()}")
    floor = statistics.median(one)
    hop = (statistics.median(chain) - floor) / 9

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(
        f"\n| measure (median of {rounds}) | trigger -> success | ratio | steps' own | other "
        "| Cloud Run reads | writes |"
    )
    print("|---|---|---|---|---|---|---|")
    print(f"| one-task DAG (the floor) | {floor:.1f} s | 1.0x | | | | |")
    print(
        f"| ten-task chain | {statistics.median(chain):.1f} s | {statistics.median(chain) / floor:.1f}x "
        f"| | {hop:.2f} s per hop | | |"
    )
    for label, rows in (
        ("cached deploy (1 preview)", cached),
        ("no-op redeploy", noop),
        (f"cached deploy ({BIG_PREVIEWS} previews)", big),
    ):
        wall = med(rows, "wall")
        print(
            f"| {label} | {wall:.1f} s | {wall / floor:.1f}x | {med(rows, 'steps'):.1f} s "
            f"| {med(rows, 'overhead'):.1f} s | {med(rows, 'reads'):.0f} | {med(rows, 'writes'):.0f} |"
        )
    print(f"\n{BIG_PREVIEWS} previews vs 1: {med(big, 'wall') / med(cached, 'wall'):.2f}x")
    print("steps' own time per task (last cached deploy):", cached[-1]["tasks"])


if __name__ == "__main__":
    sys.exit(main())
