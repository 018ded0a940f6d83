"""Import faye's heavy libraries once, in the Airflow process that forks the task processes.

Every Airflow 3 task runs in a process forked for it: with the LocalExecutor, from a worker that the
scheduler forked once at start; with Celery, from a prefork child of the worker. A faye step that builds
the Cloud Run hook first imports the google client, the google provider's base hook and Airflow's task
runner (0.5-0.8 s on these machines), and every step of every deploy paid it again. Imported once in
the process that forks, they come with each fork for nothing (copy-on-write pages). The Celery provider
preloads its own modules for the same reason ("Loading these for each task adds 0.3-0.5s per task").

:func:`install` registers :func:`preload` to run before the process's next ``fork()``
(``os.register_at_fork``), so the imports happen once Airflow has started, never inside
``airflow.settings``' own import. Only the scheduler (LocalExecutor) and a Celery worker install it.
Call it from ``airflow_local_settings.py`` (``faye stack up`` writes one; in production see
docs/production.md)::

    from faye_plugin.preload import install as _faye_preload

    _faye_preload()

Nothing is connected before the fork (no client, channel or socket is made, modules are only
imported), which is what gRPC and the google clients need to be fork-safe. ``FAYE_PRELOAD=0`` turns
it off (the deploy benchmark measures both).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

#: What faye's steps import on their way to their first call.
MODULES = (
    "airflow.sdk.execution_time.task_runner",
    "airflow.sdk.execution_time.supervisor",
    "airflow_client.client",  # the official Airflow client: ~1 s, in every queue step
    "faye_plugin.hooks.cloud_run",  # google-cloud-run and the google provider's base hook: ~0.6 s
    "airflow.providers.docker.hooks.docker",
    "airflow.providers.standard.triggers.temporal",
    "faye_plugin.hooks.airflow_api",
    "faye_plugin.hooks.proxy",
    "faye_plugin.hooks.registry",
    "faye_plugin.hooks.test_servers",
    "faye_plugin.hooks.git",
    "airflow.providers.github.hooks.github",  # and PyGithub: ~0.3 s, in every GitHub report
    "faye_plugin.hooks.github",
    "faye_plugin.operators.github",
    "faye_plugin.preview_state",
    "faye_plugin.steps",
    "faye_plugin.operators.cloud_run",
    "faye_plugin.operators.proxy",
    "faye_plugin.operators.queue",
    "faye_plugin.operators.test_runner",
    "faye_plugin.removal",
    "faye_plugin.operators.teardown",
    "faye_plugin.repair",
    "faye_plugin.dags.deploy",
)

_state = {"installed": False, "done": False}


def forks_tasks(argv: Sequence[str]) -> bool:
    """True for the processes that fork Airflow's task processes: ``airflow scheduler`` (LocalExecutor
    workers are forked from it) and ``airflow celery worker``."""
    args = list(argv[1:])
    return args[:1] == ["scheduler"] or args[:2] == ["celery", "worker"]


def preload(modules: Sequence[str] = MODULES) -> list[str]:
    """Import ``modules`` once (later calls do nothing); return those that failed to import.

    A module that cannot be imported is logged and skipped: preloading only saves time, the task
    imports it itself (and reports the real error) as it always did.
    """
    if _state["done"]:
        return []
    _state["done"] = True
    started, failed = time.perf_counter(), []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # never break a fork over a speed-up
            failed.append(name)
            log.warning("faye preload: cannot import %s: %s", name, exc)
    log.info("faye preload: %d modules in %.2f s", len(modules) - len(failed), time.perf_counter() - started)
    return failed


def install(argv: Sequence[str] | None = None) -> bool:
    """Preload before this process's next fork, if it is one that forks tasks; True when installed."""
    argv = sys.argv if argv is None else argv
    if _state["installed"] or os.environ.get("FAYE_PRELOAD", "1") == "0" or not forks_tasks(argv):
        return False
    os.register_at_fork(before=preload)
    _state["installed"] = True
    return True
