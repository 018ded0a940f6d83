"""The `faye` console script: subcommands found by module, `faye stack status --json` on nothing."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from faye_plugin.cli.main import build_parser, command_modules, main


def _commands(parser: object) -> set[str]:
    action = next(a for a in parser._actions if a.dest == "command")  # type: ignore[attr-defined]
    return set(action.choices)


def test_every_module_registers_and_a_named_command_loads_alone() -> None:
    assert {"stack", "demo"} <= set(command_modules())
    assert {"stack", "demo"} <= _commands(build_parser())
    assert _commands(build_parser("stack")) == {"stack"}


def test_status_json_of_a_stack_that_never_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a base whose ports nobody listens on
        sock.bind(("127.0.0.1", 0))
        base = sock.getsockname()[1] // 10 * 10 - 10
    monkeypatch.setenv("FAYE_HOME", str(tmp_path))
    monkeypatch.setenv("FAYE_PORT_BASE", str(base))
    assert main(["stack", "status", "--json"]) == 1
    status = json.loads(capsys.readouterr().out)
    for key in (
        "airflow_url",
        "proxy_url",
        "proxy_admin_url",
        "registry_url",
        "cloud_run_url",
        "github_url",
        "sample_repo",
    ):
        assert key in status
    assert status["state_dir"] == str(tmp_path)
    assert status["healthy"] is False and status["health"]["registry"] == "unhealthy"
    assert status["test_docker_urls"] == [f"unix://{tmp_path}/podman/test-{i}.sock" for i in (1, 2)]
    assert status["airflow_password"] is None and not (tmp_path / "secrets.json").exists()


def test_a_bad_setting_is_one_line_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAYE_PORT_BASE", "nope")
    assert main(["stack", "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("faye: FAYE_PORT_BASE") and err.count("\n") == 1
