"""Shared fixtures: the local stack (once per test session) and a small Airflow REST client.

* ``stack`` (session): runs ``faye stack up --json`` with ``FAYE_HOME`` / ``FAYE_PORT_BASE`` from the
  environment, else ``<repo>/.faye-test`` and ``28800``, and yields the status dict (the same object
  as ``faye stack status --json``: ``airflow_url``, ``registry_url``, ``build_docker_url``,
  ``run_docker_url``, ``test_docker_urls``, ``sample_repo``, ...). At the end of the session it runs
  ``faye stack down`` and fails the session if a process of the stack is left, unless
  ``FAYE_KEEP_STACK=1`` (handy while iterating: the next session's ``up`` then takes a second).
  Session fixtures that use the stack in their teardown must depend on ``stack``.
* ``airflow_api`` (session): a ``faye_testing.AirflowAPI`` logged in as the stack's ``faye`` user.
* ``faye_cli`` (session): :func:`faye`, to run the ``faye`` CLI against the test stack.
* ``stack_process_env`` (module): this process gets the stack's connections, catalogue and REST
  credentials (``faye_testing.process_env``), so hooks and CLI functions called in-process reach
  the same peers as the stack's Airflow; undone at the end of the module.

Use them from integration tests only (``@pytest.mark.integration``); unit tests need no stack.

Airflow imported by tests themselves (DagBag, dag.test) uses ``<repo>/.cache/airflow-test-home``,
never ``~/airflow``. A test marked ``stack_teardown`` runs after every other test (it may stop the
session stack); one marked ``after_suite`` runs after every other test but those (it reads what the
others left on the stack: tests/integration/test_secret_scan.py). The order is a collection hook, not
file names, so it holds whatever files and order the command line names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from faye_testing import REPO, AirflowAPI, faye, process_env, stack_env

os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".cache" / "airflow-test-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack_teardown: runs last; may stop the session's stack")
    config.addinivalue_line("markers", "after_suite: runs after every other test but stack_teardown ones")


def _run_order(item: pytest.Item) -> int:
    if item.get_closest_marker("stack_teardown"):
        return 2
    return 1 if item.get_closest_marker("after_suite") else 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_run_order)  # stable: each group keeps its collection order


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
            _down_and_check()


def _down_and_check() -> None:
    """``faye stack down``, then fail if anything of the stack still runs."""
    from faye_plugin.stack import podman
    from faye_plugin.stack.config import StackConfig
    from faye_plugin.stack.processes import session_members

    cfg = StackConfig.from_env(stack_env())
    sessions = [int(json.loads(p.read_text())["pid"]) for p in cfg.run_dir.glob("*.pid")]
    proc = faye("stack", "down", check=False)
    left = [p for sid in sessions for p in session_members(sid)] + podman.conmon_pids(cfg)
    if proc.returncode != 0 or left:
        pytest.fail(f"faye stack down left pids {left} (exit {proc.returncode}): {proc.stderr[-2000:]}")


@pytest.fixture(scope="session")
def faye_cli() -> Any:
    return faye


@pytest.fixture(scope="session")
def airflow_api(stack: dict[str, Any]) -> AirflowAPI:
    return AirflowAPI(stack["airflow_url"], stack["airflow_username"], stack["airflow_password"])


@pytest.fixture(scope="module")
def stack_process_env(stack: dict[str, Any]) -> Iterator[dict[str, str]]:
    """Give this process the stack's connections, catalogue and REST credentials (module scope)."""
    env = process_env(stack)
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    yield env
    mp.undo()
