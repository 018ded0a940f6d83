"""Helpers shared by the integration tests: the test stack's environment, the ``faye`` CLI, a REST client.

Import them as ``from faye_testing import AirflowAPI, faye, stack_env`` (a module of its own: several
``conftest.py`` files exist, so ``from conftest import ...`` would pick whichever was imported first).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
TEST_HOME = REPO / ".faye-test"
TEST_PORT_BASE = "28800"
FINISHED = ("success", "failed")


def stack_env() -> dict[str, str]:
    """The environment the test stack runs with (the caller's, plus the test defaults)."""
    env = dict(os.environ)
    env.setdefault("FAYE_HOME", str(TEST_HOME))
    env.setdefault("FAYE_PORT_BASE", TEST_PORT_BASE)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(REPO / ".cache" / "pycache"))
    return env


def env_from_sh(path: Path) -> dict[str, str]:
    """The variables ``$FAYE_HOME/env.sh`` exports (``export KEY='value'`` lines)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line.removeprefix("export ").partition("=")
            out[key] = shlex.split(value)[0] if value else ""
    return out


def process_env(stack: dict[str, Any]) -> dict[str, str]:
    """What a test process needs to act as Airflow's processes and the CLI do on the stack: the
    connections (``AIRFLOW_CONN_*``), the catalogue and the REST credentials."""
    env = {k: v for k, v in env_from_sh(Path(stack["env_sh"])).items() if k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW__FAYE__CATALOGUE"] = stack["catalogue"]
    env["FAYE_AIRFLOW_URL"] = stack["airflow_url"]
    env["FAYE_AIRFLOW_USER"] = stack["airflow_username"]
    env["FAYE_AIRFLOW_PASSWORD"] = stack["airflow_password"]
    return env


def faye(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the ``faye`` CLI (this interpreter's) against the test stack."""
    return subprocess.run(
        [sys.executable, "-m", "faye_plugin.cli.main", *args],
        env=stack_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


class AirflowAPI:
    """A small client of Airflow's REST API v2 (token from ``POST /auth/token``)."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        resp = self.session.post(
            f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=10
        )
        resp.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        resp = self.session.get(f"{self.url}/api/v2/{path.lstrip('/')}", params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
        """Trigger ``dag_id`` as docs/deploy.md tells CI to (``logical_date`` = now); return the run.

        A 500 (SQLite's "database is locked" on the busy embedded stack) is retried with the same run
        id, as docs/deploy.md advises; a 409 on the retry means the first POST landed.
        """
        logical_date = datetime.now(UTC).isoformat()
        run_id = run_id or f"manual__{logical_date}"
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": logical_date, "conf": conf}
        for attempt in range(1, 4):
            resp = self.session.post(f"{self.url}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=30)
            if resp.status_code == 409 and attempt > 1:
                return dict(self.get(f"dags/{dag_id}/dagRuns/{run_id}"))
            if resp.status_code != 500 or attempt == 3:
                resp.raise_for_status()
                return dict(resp.json())
            time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
        """Poll the run until it is success/failed; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = dict(self.get(f"dags/{dag_id}/dagRuns/{run_id}"))
            if run["state"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                pytest.fail(f"run {dag_id}/{run_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(1)

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """Return the run's task instances keyed by task_id (mapped ones as ``task_id[index]``)."""
        data = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)
        out = {}
        for ti in data["task_instances"]:
            key = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            out[key] = ti
        return out
