"""The Celery stack next to the embedded one, measured side by side in one run.

    FAYE_PORT_BASE=29400 FAYE_CELERY_PORT_BASE=29500 FAYE_CELERY_REDIS_DB=14 \\
        uv run python bench/bench_celery.py [--runs 3] [--keep]

Two stacks of their own (``.faye-bench-embedded``: LocalExecutor on SQLite; ``.faye-bench-celery``:
CeleryExecutor on PostgreSQL database ``faye_bench_celery`` and Redis db ``FAYE_CELERY_REDIS_DB``, two
workers, builds on the ``build`` queue, builder and test servers on loopback TCP, as
tests/integration/test_celery_stack.py runs it). Their DAG folder is a copy of ``dags/`` plus a
one-task DAG (``faye_bench_one``), the yardstick each stack's numbers are divided by, since the
machine's load moves every absolute number. Measured, alternating between the stacks:

* one-task DAG: trigger to the run's ``end_date`` (median of ``--runs``);
* cached deploy: PR 900 of ``hello`` alternately at HEAD and HEAD~1 (both images built in a warm-up),
  so each run deploys a new revision, routes it and runs the tests, and none builds (median);
* burst of 6: PRs 901-906 of the service ``bench`` (six slots) triggered at once: first trigger to
  the last run's ``end_date``;
* PSS of every process of each stack after 20 s of idling.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchstack import REPO, add_service, faye, prepare

from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.processes import session_members


def stack_envs() -> dict[str, dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base.setdefault("PYTHONPYCACHEPREFIX", str(REPO / ".cache" / "pycache"))
    redis_db = os.environ.get("FAYE_CELERY_REDIS_DB", "14")
    return {
        "embedded": base
        | {
            "FAYE_HOME": str(REPO / ".faye-bench-embedded"),
            "FAYE_PORT_BASE": os.environ.get("FAYE_PORT_BASE", "29400"),
            "FAYE_DAGS_FOLDER": str(REPO / ".faye-bench-embedded" / "dags"),
        },
        "celery": base
        | {
            "FAYE_HOME": str(REPO / ".faye-bench-celery"),
            "FAYE_PORT_BASE": os.environ.get("FAYE_CELERY_PORT_BASE", "29500"),
            "FAYE_DAGS_FOLDER": str(REPO / ".faye-bench-celery" / "dags"),
            "FAYE_EXECUTOR": "celery",
            "FAYE_DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1:5432/faye_bench_celery",
            "FAYE_REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "FAYE_CELERY_WORKERS": "2",
            "FAYE_BUILD_QUEUE": "build",
            "FAYE_DOCKER_TCP": "build,test-1,test-2",
        },
    }


class Api:
    """Airflow's REST API through the official client (apache-airflow-client)."""

    def __init__(self, status: dict[str, Any]) -> None:
        import airflow_client.client as af
        import requests

        token = requests.post(
            f"{status['airflow_url']}/auth/token",
            json={"username": "faye", "password": status["airflow_password"]},
            timeout=60,
        ).json()["access_token"]
        config = af.Configuration(host=status["airflow_url"], access_token=token)
        self.runs = af.DagRunApi(af.ApiClient(config))
        self.body = af.TriggerDAGRunPostBody

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> tuple[str, float]:
        now = datetime.now(UTC)
        run = self.runs.trigger_dag_run(dag_id, self.body(logical_date=now, conf=conf))
        return run.dag_run_id, now.timestamp()

    def wait(self, dag_id: str, run_id: str, timeout: float = 1200) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                run = self.runs.get_dag_run(dag_id, run_id)
                if str(run.state.value if hasattr(run.state, "value") else run.state) in (
                    "success",
                    "failed",
                ):
                    return run
            except Exception:  # a slow answer of the busy api-server: poll again
                pass
            time.sleep(0.5)
        raise SystemExit(f"{dag_id} {run_id} did not end in {timeout:.0f} s")

    def timed(self, dag_id: str, conf: dict[str, Any]) -> float:
        run_id, started = self.trigger(dag_id, conf)
        run = self.wait(dag_id, run_id)
        state = str(run.state.value if hasattr(run.state, "value") else run.state)
        if state != "success":
            raise SystemExit(f"{dag_id} {run_id} ended {state}")
        return run.end_date.timestamp() - started


def pss_mb(env: dict[str, str]) -> float:
    cfg = StackConfig.from_env(env)
    total = 0
    for pidfile in cfg.run_dir.glob("*.pid"):
        for pid in session_members(int(json.loads(pidfile.read_text())["pid"])):
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            except OSError:
                continue
            total += next((int(line.split()[1]) for line in rollup if line.startswith("Pss:")), 0)
    return total / 1024


def burst(api: Api, sha: str) -> float:
    runs = [
        api.trigger("faye_deploy", {"service": "bench", "pr": pr, "git_sha": sha}) for pr in range(901, 907)
    ]
    ends = []
    for run_id, _ in runs:
        run = api.wait("faye_deploy", run_id)
        ends.append(run.end_date.timestamp())
    return max(ends) - runs[0][1]


def main() -> None:
    envs = stack_envs()
    try:
        measure(envs, int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3)
    finally:
        if "--keep" not in sys.argv:
            for env in envs.values():
                faye(env, "stack", "down")


def measure(envs: dict[str, dict[str, str]], count: int) -> None:
    apis, shas = {}, []
    for name, env in envs.items():
        prepare(env)
        status = json.loads(faye(env, "stack", "up", "--json"))
        add_service(Path(status["catalogue"]), "bench", [f"b{i}" for i in range(1, 7)])
        apis[name] = Api(status)
        shas = subprocess.run(
            ["git", "-C", status["sample_repo"], "log", "--format=%H", "-2"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    print(f"load average at start: {os.getloadavg()}")
    time.sleep(20)
    pss = {name: pss_mb(env) for name, env in envs.items()}
    for api in apis.values():  # warm-up: both images, the first run of each worker process
        for sha in shas:
            api.timed("faye_deploy", {"service": "hello", "pr": 900, "git_sha": sha})
        api.timed("faye_bench_one", {})
    one: dict[str, list[float]] = {name: [] for name in apis}
    deploy: dict[str, list[float]] = {name: [] for name in apis}
    for i in range(count):
        for name, api in apis.items():
            one[name].append(api.timed("faye_bench_one", {}))
            sha = shas[(i + 1) % 2]  # the warm-up ended on shas[1]
            deploy[name].append(api.timed("faye_deploy", {"service": "hello", "pr": 900, "git_sha": sha}))
    bursts = {name: burst(api, shas[0]) for name, api in apis.items()}
    print(f"load average at end: {os.getloadavg()}")
    print("| measure | embedded (LocalExecutor, SQLite) | Celery (2 workers, PostgreSQL, Redis) |")
    print("|---|---|---|")
    row = {n: statistics.median(v) for n, v in one.items()}
    dep = {n: statistics.median(v) for n, v in deploy.items()}
    e, c = "embedded", "celery"
    print(f"| one-task DAG, trigger -> success (median of {count}) | {row[e]:.1f} s | {row[c]:.1f} s |")
    print(
        f"| cached deploy (median of {count}) | {dep[e]:.1f} s ({dep[e] / row[e]:.1f}x)"
        f" | {dep[c]:.1f} s ({dep[c] / row[c]:.1f}x) |"
    )
    print(
        f"| burst of 6 deploys, first trigger -> last success | {bursts['embedded']:.1f} s "
        f"({bursts['embedded'] / row['embedded']:.1f}x) | {bursts['celery']:.1f} s "
        f"({bursts['celery'] / row['celery']:.1f}x) |"
    )
    print(f"| PSS at idle | {pss['embedded']:.0f} MB | {pss['celery']:.0f} MB |")


if __name__ == "__main__":
    main()
