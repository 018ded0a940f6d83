"""Test-server utilisation: N queued ``faye_test`` runs of known length on the stack's test servers.

Usage (on a running stack; FAYE_HOME / FAYE_PORT_BASE select it)::

    uv run python bench/bench_test_servers.py [--runs 6] [--seconds 5]

It adds a service ``bench-sleeper`` whose test is ``sleep <seconds>`` to the stack's catalogue (removed
afterwards), routes the slot ``zb`` to a preview served by this process, sizes the pool with the
catalogue, triggers the runs at once (``logical_date`` = trigger time) and prints:

* makespan of the test phase (first ``run_tests`` start to last end) against the ideal
  ``runs * seconds / servers``, and the utilisation ``runs * seconds / (servers * makespan)``;
* the hand-over wait on each server: from one lease's release to the next lease's acquisition, and
  from one ``run_tests`` ending to the next one starting (what Airflow adds: pool + scheduling).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

SLOT = "zb"
SERVICE = "bench-sleeper"


class _Preview(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"bench preview\n")

    def log_message(self, *args: object) -> None:
        pass


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _gaps(pairs: list[tuple[float, float]]) -> list[float]:
    """Waits between one interval's end and the next one's start (intervals sorted by start)."""
    ordered = sorted(pairs)
    return [round(b[0] - a[1], 3) for a, b in itertools.pairwise(ordered)]


def _summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"median {statistics.median(values):.2f} s, min {min(values):.2f} s, max {max(values):.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each test (sleep)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.cli.pool import sync_pool
    from faye_plugin.hooks.airflow_api import AirflowApiClient
    from faye_plugin.stack.config import StackConfig
    from faye_plugin.stack.manager import Stack

    status = Stack(StackConfig.from_env()).status()
    if not status.get("healthy"):
        print("the stack is not healthy: start it with `faye stack up`", file=sys.stderr)
        return 1
    for line in Path(status["env_sh"]).read_text().splitlines():  # the stack's connections, for ProxyHook
        if line.startswith("export AIRFLOW_CONN_"):
            import os
            import shlex

            key, _, value = line.removeprefix("export ").partition("=")
            os.environ[key] = shlex.split(value)[0]
    from faye_plugin.hooks.proxy import ProxyHook, SlotRoute

    client = AirflowApiClient(status["airflow_url"], status["airflow_username"], status["airflow_password"])
    path = Path(status["catalogue"])
    original = path.read_text()
    data = yaml.safe_load(original)
    data["services"][SERVICE] = {
        "cloud_run": {"project": "local", "region": "europe-west1"},
        "image": f"{status['registry_host']}/hello",
        "build": {"git_url": status["sample_repo"]},
        "slots": [SLOT],
        "test": {
            "image": "localhost/faye-base:latest",
            "command": ["sleep", str(args.seconds)],
            "timeout_minutes": 5,
        },
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Preview)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = ProxyHook("faye_proxy")
    try:
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        servers = len(load_catalogue(path).test_servers)
        sync_pool(client, servers)
        upstream = f"http://127.0.0.1:{server.server_address[1]}"
        hostname = proxy.slot_hostname(SLOT)
        proxy.upsert_slot_route(SlotRoute(SLOT, hostname, upstream, SERVICE, 1, "0" * 40, "none", "pr-1"))
        t0 = time.time()
        run_ids = []
        for i in range(args.runs):
            run_id = f"bench-{uuid.uuid4().hex[:8]}-{i}"
            logical = (datetime.now(UTC) + timedelta(microseconds=i)).isoformat()
            conf = {"service": SERVICE, "pr": 100 + i, "git_sha": "e" * 40, "slot": SLOT}
            body = {"dag_run_id": run_id, "logical_date": logical, "conf": conf}
            client.request("POST", "/dags/faye_test/dagRuns", json=body)
            run_ids.append(run_id)
        states: dict[str, str] = {}
        while len(states) < len(run_ids):
            for run_id in run_ids:
                if run_id not in states:
                    run = client.get_run("faye_test", run_id)
                    if run.state in ("success", "failed"):
                        states[run_id] = run.state
            time.sleep(1)
        wall = time.time() - t0
        tis, leases = [], []
        # per run, in trigger order: (entered the pool's queue, got a pool slot = queued for a worker)
        ready_start: list[tuple[float, float]] = []
        for run_id in run_ids:
            ti_path = f"/dags/faye_test/dagRuns/{run_id}/taskInstances/test.run_tests"
            raw = client.request("GET", ti_path).json()
            if raw.get("start_date") and raw.get("end_date"):
                tis.append((_ts(raw["start_date"]), _ts(raw["end_date"])))
            if raw.get("queued_when") and raw.get("scheduled_when"):
                ready_start.append((_ts(raw["scheduled_when"]), _ts(raw["queued_when"])))
            lease = client.xcom("faye_test", run_id, "test.run_tests", "lease")
            if isinstance(lease, dict) and lease.get("released"):
                leases.append(lease)
    finally:
        proxy.delete_slot_route(SLOT)
        server.shutdown()
        path.write_text(original)

    ideal = args.runs * args.seconds / servers
    makespan = max(e for _, e in tis) - min(s for s, _ in tis)
    lease_gaps: list[float] = []
    ti_gaps: list[float] = []
    for name in sorted({str(x["server"]) for x in leases}):
        held = [(_ts(x["acquired"]), _ts(x["released"])) for x in leases if x["server"] == name]
        lease_gaps += _gaps(held)
    # TI-level hand-over: each test task start matched with the latest earlier end (a freed pool slot)
    ends = sorted(e for _, e in tis)
    for start, _ in sorted(tis)[servers:]:
        earlier = [e for e in ends if e <= start]
        if earlier:
            ti_gaps.append(round(start - earlier[-1], 3))
    held_time = [_ts(x["released"]) - _ts(x["acquired"]) for x in leases]
    # FIFO: a later-triggered run got a pool slot while an earlier one already waited for one
    # (the scheduler's decision is `queued_when`; two slots handed out in one loop share it)
    fifo_violations = sum(
        1
        for i, (ready_i, served_i) in enumerate(ready_start)
        for ready_j, served_j in ready_start[i + 1 :]
        if ready_i <= served_j < served_i
    )
    result: dict[str, Any] = {
        "runs": args.runs,
        "seconds_per_test": args.seconds,
        "servers": servers,
        "states": sorted(states.values()),
        "wall_seconds_trigger_to_last_run_end": round(wall, 2),
        "test_phase_makespan_seconds": round(makespan, 2),
        "ideal_makespan_seconds": round(ideal, 2),
        "makespan_over_ideal": round(makespan / ideal, 2),
        "utilisation": round(args.runs * args.seconds / (servers * makespan), 3),
        "lease_held_seconds_median": round(statistics.median(held_time), 2) if held_time else None,
        "lease_handover_gaps": lease_gaps,
        "task_handover_gaps": ti_gaps,
        "fifo_violations": fifo_violations,
    }
    print(f"{args.runs} runs x {args.seconds:.0f} s of test on {servers} servers: {result['states']}")
    print(f"  test-phase makespan {makespan:.1f} s, ideal {ideal:.1f} s ({result['makespan_over_ideal']}x)")
    print(f"  utilisation of the servers during the test phase: {result['utilisation']:.0%}")
    held = result["lease_held_seconds_median"]
    print(f"  a lease is held {held} s (median) for a {args.seconds:.0f} s test")
    print(f"  lease released -> next lease taken on the same server: {_summary(lease_gaps)}")
    print(f"  run_tests ended -> next run_tests started: {_summary(ti_gaps)}")
    print(f"  served out of trigger order while an earlier run waited: {fifo_violations} time(s)")
    print(f"  trigger -> last run ended: {wall:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if set(states.values()) == {"success"} else 1


if __name__ == "__main__":
    sys.exit(main())
