"""Helpers shared by the integration tests: the test stack's environment, the ``faye`` CLI, a REST client.

Import them as ``from faye_testing import AirflowAPI, faye, stack_env`` (a module of its own: several
``conftest.py`` files exist, so ``from conftest import ...`` would pick whichever was imported first).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from faye_plugin.run_identity import run_id_for_conf

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


def push_image(stack: dict[str, Any], context: Path, name: str, tag: str, dockerfile: str) -> str:
    """Build ``dockerfile`` in ``context`` (an empty folder) on the stack's builder and push it to the
    stack's registry as ``<registry>/faye-test/<name>:<tag>``; return the repository."""
    import docker

    (context / "Dockerfile").write_text(dockerfile)
    repository = f"{stack['registry_host']}/faye-test/{name}"
    client = docker.DockerClient(base_url=stack["build_docker_url"], timeout=120)
    try:
        client.images.build(path=str(context), tag=f"{repository}:{tag}", rm=True)
        for line in client.images.push(repository, tag=tag, stream=True, decode=True):
            assert "error" not in line, line
    finally:
        client.close()
    return repository


def push_serving_image(stack: dict[str, Any], context: Path, name: str, serve: str) -> str:
    """Build a busybox image running ``serve`` (a shell command) and push it to the stack's registry.

    Returns ``<registry>/faye-test/<name>:v1``. ``context`` is an empty folder for the build.
    """
    import json

    dockerfile = f"FROM localhost/faye-base:latest\nCMD {json.dumps(['/bin/sh', '-c', serve])}\n"
    return f"{push_image(stack, context, name, 'v1', dockerfile)}:v1"


def start_upstream(name: str) -> ThreadingHTTPServer:
    """A throw-away HTTP server on 127.0.0.1 answering ``<name> host=<Host header>`` (caller stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            body = f"{name} host={self.headers.get('Host')}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


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


def wait_for(predicate: Any, what: str, timeout: float = 300, every: float = 2) -> Any:
    """Poll ``predicate`` until it returns something true (returned), or fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(every)


class AirflowAPI:
    """A small client of Airflow's REST API v2 (token from ``POST /auth/token``).

    Plain REST on purpose, not faye's ``AirflowApiClient``: the tests trigger and watch runs as CI or
    GitHub would (docs/deploy.md), so a fault of faye's client cannot hide behind itself. Its resend
    of a POST answered 500 is the one docs/deploy.md asks CI callers to write.
    """

    def __init__(self, url: str, username: str, password: str, timeout: float = 10) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        resp = self.session.post(
            f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=timeout
        )
        resp.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        resp = self.session.get(f"{self.url}/api/v2/{path.lstrip('/')}", params=params, timeout=self.timeout)
        resp.raise_for_status()
        return resp.json()

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
        """Trigger ``dag_id`` as docs/deploy.md tells CI to (``logical_date`` = now); return the run.

        A 500 (SQLite's "database is locked" on the busy embedded stack) is retried with the same run
        id, as docs/deploy.md advises; a 409 on the retry means the first POST landed.
        """
        now = datetime.now(UTC)
        logical_date = now.isoformat()
        # the readable id docs/deploy.md tells CI to send (a preview's DAGs), else Airflow's own form
        run_id = run_id or run_id_for_conf(dag_id, conf, now) or f"manual__{logical_date}"
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": logical_date, "conf": conf}
        for attempt in range(1, 4):
            resp = self.session.post(
                f"{self.url}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=max(30, self.timeout)
            )
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
        next_health, unhealthy = time.monotonic() + 30, 0
        run: dict[str, Any] = {"state": "unknown"}
        while True:
            try:
                run = dict(self.get(f"dags/{dag_id}/dagRuns/{run_id}"))
            except (requests.Timeout, requests.ConnectionError):
                pass  # a poll: a slow answer (a loaded machine) is asked again, until the deadline
            if run["state"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                pytest.fail(f"run {dag_id}/{run_id} still {run['state']} after {timeout:.0f} s")
            if time.monotonic() > next_health:  # a dead scheduler or triggerer: say so, do not wait
                try:
                    dead = self.unhealthy()
                except (requests.Timeout, requests.ConnectionError):
                    dead = {}
                unhealthy = unhealthy + 1 if dead else 0
                if unhealthy >= 2:  # twice, 30 s apart: not one heartbeat late on a loaded machine
                    pytest.fail(f"run {dag_id}/{run_id} is {run['state']}; Airflow's {dead} is not healthy")
                next_health = time.monotonic() + 30
            time.sleep(1)

    def unhealthy(self) -> dict[str, Any]:
        """The parts of Airflow (scheduler, triggerer, dag processor) whose health check fails."""
        health = self.get("monitor/health")
        return {
            part: health[part]
            for part in ("scheduler", "triggerer", "dag_processor")
            if (health.get(part) or {}).get("status") not in (None, "healthy")
        }

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """Return the run's task instances keyed by task_id (mapped ones as ``task_id[index]``)."""
        data = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)
        out = {}
        for ti in data["task_instances"]:
            key = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            out[key] = ti
        return out


UI_ARTIFACTS = REPO / ".cache" / "artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright's own browser download cannot work here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ui_shot(page: Any, name: str) -> None:
    """Keep a screenshot of ``page`` as a test artifact (``.cache/artifacts/ui/<time>-<name>.png``)."""
    UI_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    try:
        page.screenshot(path=str(UI_ARTIFACTS / f"{stamp}-{name}.png"), animations="disabled", timeout=60000)
    except Exception as exc:  # an artifact, not the check
        (UI_ARTIFACTS / f"{stamp}-{name}.txt").write_text(f"screenshot failed: {exc}\n")
