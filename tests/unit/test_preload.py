"""faye_plugin/preload.py: which processes preload, and that a fork really inherits the modules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from faye_plugin import preload


@pytest.mark.parametrize(
    ("argv", "forks"),
    [
        (["airflow", "scheduler"], True),
        (["/venv/bin/airflow", "celery", "worker", "--queues", "default"], True),
        (["airflow", "api-server"], False),
        (["airflow", "triggerer"], False),
        (["airflow", "dag-processor"], False),
        (["airflow", "celery", "flower"], False),
        (["pytest"], False),
    ],
)
def test_only_the_processes_that_fork_tasks_preload(argv: list[str], forks: bool) -> None:
    assert preload.forks_tasks(argv) is forks


def test_a_module_that_fails_to_import_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preload, "_state", {"installed": False, "done": False})
    assert preload.preload(("json", "faye_plugin.no_such_module")) == ["faye_plugin.no_such_module"]
    assert preload.preload(("faye_plugin.no_such_module",)) == []  # once per process


def test_a_forked_child_finds_the_cloud_run_hook_already_imported() -> None:
    """In a fresh interpreter posing as the scheduler: install, fork, and the child has the modules
    without importing them; with FAYE_PRELOAD=0 it does not."""
    script = textwrap.dedent(
        """
        import os, sys
        from faye_plugin import preload
        installed = preload.install(["airflow", "scheduler"])
        pid = os.fork()
        if pid == 0:
            os._exit(0 if "faye_plugin.hooks.cloud_run" in sys.modules else 3)
        _, status = os.waitpid(pid, 0)
        print(installed, os.waitstatus_to_exitcode(status))
        """
    )
    env = dict(os.environ)
    for value, expected in (("1", "True 0"), ("0", "False 3")):
        env["FAYE_PRELOAD"] = value
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=True
        )
        assert out.stdout.split("\n")[-2].strip() == expected, out.stdout + out.stderr
