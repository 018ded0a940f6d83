"""Shared fixtures: the local stack (once per test session) and a small Airflow REST client.

* ``stack`` (session): runs ``faye stack up --json`` with ``FAYE_HOME`` / ``FAYE_PORT_BASE`` from the
  environment, else ``<repo>/.faye-test`` and ``28800``, and yields the status dict (the same object
  as ``faye stack status --json``: ``airflow_url``, ``registry_url``, ``build_docker_url``,
  ``test_docker_urls``, ``sample_repo``, ...). It runs ``faye stack down`` at the end of the session
  unless ``FAYE_KEEP_STACK=1`` (handy while iterating: the next session's ``up`` then takes a second).
* ``airflow_api`` (session): an :class:`AirflowAPI` logged in as the stack's ``faye`` user.
* ``faye_cli`` (session): :func:`faye`, to run the ``faye`` CLI against the test stack.

Use them from integration tests only (``@pytest.mark.integration``); unit tests need no stack.

Airflow imported by tests themselves (DagBag, dag.test) uses ``<repo>/.cache/airflow-test-home``,
never ``~/airflow``. A test marked ``stack_teardown`` runs after every other test (it may stop the
session stack).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
TEST_HOME = REPO / ".faye-test"
TEST_PORT_BASE = "28800"
FINISHED = ("success", "failed")

os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".cache" / "airflow-test-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack_teardown: runs last; may stop the session's stack")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("stack_teardown") is not None)


def stack_env() -> dict[str, str]:
    """The environment the test stack runs with (the caller's, plus the test defaults)."""
    env = dict(os.environ)
    env.setdefault("FAYE_HOME", str(TEST_HOME))
    env.setdefault("FAYE_PORT_BASE", TEST_PORT_BASE)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(REPO / ".cache" / "pycache"))
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


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, Any]]:
    """Start the local stack once per session; yield its status dict."""
    try:
        proc = faye("stack", "up", "--json", check=False)
        if proc.returncode != 0:
            pytest.fail(f"faye stack up failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n{proc.stdout}")
        yield json.loads(proc.stdout)
    finally:
        if os.environ.get("FAYE_KEEP_STACK") != "1":
            faye("stack", "down", check=False)


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
        """Trigger ``dag_id`` (``logical_date`` is required in the body; null is fine); return the run."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        resp = self.session.post(f"{self.url}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

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


@pytest.fixture(scope="session")
def faye_cli() -> Any:
    return faye


@pytest.fixture(scope="session")
def airflow_api(stack: dict[str, Any]) -> AirflowAPI:
    return AirflowAPI(stack["airflow_url"], stack["airflow_username"], stack["airflow_password"])
