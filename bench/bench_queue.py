"""Benchmark the queue steps on a running local stack: how fast a newer push stops an older deploy, and
what the two queue steps cost a deploy.

    FAYE_HOME=... FAYE_PORT_BASE=... uv run python bench/bench_queue.py [--pairs N] [--pr P]

Per pair it triggers two deploys of one PR (the sample repository's two newest commits, older first)
back to back, then prints:
- cancel latency: newer trigger -> older run ended (failed, note "superseded by ...");
- queue steps: durations of ``supersede_older_runs`` and ``still_newest`` in the newer run, and their
  share of its trigger-to-success time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime

from faye_plugin.hooks.airflow_api import AirflowApiClient
from faye_plugin.stack.config import StackConfig


def _wait(client: AirflowApiClient, run_id: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while client.get_run("faye_deploy", run_id).state not in ("success", "failed"):
        if time.monotonic() > deadline:
            raise SystemExit(f"{run_id} did not finish in {timeout:.0f} s")
        time.sleep(1)


def _seconds(a: datetime | None, b: datetime | None) -> float:
    return (b - a).total_seconds() if a and b else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--pr", type=int, default=691)
    args = parser.parse_args()
    cfg = StackConfig.from_env()
    password = json.loads((cfg.home / "secrets.json").read_text())["airflow_password"]
    client = AirflowApiClient(cfg.url("airflow"), "faye", password)
    shas = subprocess.run(
        ["git", "-C", str(cfg.sample_repo), "log", "--format=%H"], capture_output=True, text=True, check=True
    ).stdout.split()
    cancel, steps, totals = [], [], []
    for i in range(args.pairs):
        older = client.trigger("faye_deploy", {"service": "hello", "pr": args.pr, "git_sha": shas[1]})
        newer = client.trigger("faye_deploy", {"service": "hello", "pr": args.pr, "git_sha": shas[0]})
        _wait(client, older.run_id)
        _wait(client, newer.run_id)
        old, new = client.get_run("faye_deploy", older.run_id), client.get_run("faye_deploy", newer.run_id)
        resp = client.request("GET", f"/dags/faye_deploy/dagRuns/{older.run_id}").json()
        ended = datetime.fromisoformat(resp["end_date"]) if resp.get("end_date") else None
        cancel.append(_seconds(new.run_after, ended))
        tis = {t.task_id: t for t in client.task_instances("faye_deploy", newer.run_id)}
        own = sum(
            _seconds(tis[t].start_date, tis[t].end_date)
            for t in ("supersede_older_runs", "still_newest")
            if t in tis
        )
        done = client.request("GET", f"/dags/faye_deploy/dagRuns/{newer.run_id}").json().get("end_date")
        total = _seconds(new.run_after, datetime.fromisoformat(done) if done else None)
        steps.append(own)
        totals.append(total)
        print(
            f"pair {i + 1}: older {old.state} ({(old.note or '')[:40]}...), newer {new.state}; "
            f"cancel latency {cancel[-1]:.1f} s; queue steps {own:.1f} s of {total:.1f} s trigger-to-end",
            flush=True,
        )
    print(f"cancel latency (newer trigger -> older ended): median {statistics.median(cancel):.1f} s")
    print(f"queue steps (supersede_older_runs + still_newest): median {statistics.median(steps):.1f} s")
    print(f"newer deploy trigger-to-end: median {statistics.median(totals):.1f} s")
    print(f"settings: FAYE_HOME={os.environ.get('FAYE_HOME')}; still_newest pause 15 s; cancel watch 4 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
