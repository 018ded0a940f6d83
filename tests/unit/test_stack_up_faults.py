"""Faults `faye stack up` must report before it changes anything: a taken port, a missing package."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from faye_plugin.exceptions import StackError
from faye_plugin.stack import packages
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.manager import Stack


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("part", "variable"),
    [
        ("registry", "FAYE_REGISTRY_PORT"),
        ("airflow", "FAYE_AIRFLOW_PORT"),
        ("proxy", "FAYE_PROXY_PORT"),
        ("proxy admin", "FAYE_PROXY_ADMIN_PORT"),
        ("Cloud Run emulator", "FAYE_CLOUD_RUN_PORT"),
        ("triggerer log server", "FAYE_TRIGGER_LOG_PORT"),
    ],
)
def test_a_taken_port_names_the_port_and_its_variable_and_starts_nothing(
    tmp_path: Path, taken_port: int, part: str, variable: str
) -> None:
    cfg = StackConfig.from_env(
        {"FAYE_HOME": str(tmp_path), "FAYE_PORT_BASE": "31700", variable: str(taken_port)}
    )
    stack = Stack(cfg)
    with pytest.raises(StackError) as err:
        stack.up()
    message = str(err.value)
    assert str(taken_port) in message and variable in message and "FAYE_PORT_BASE" in message
    assert stack.sup.names() == []  # no pid file: nothing was started
    assert not cfg.sample_repo.exists()


def test_missing_reports_only_what_dpkg_lacks() -> None:
    assert packages.missing(["faye-no-such-package-xyz", "dpkg"]) == ["faye-no-such-package-xyz"]
    assert packages.ensure(["dpkg"]) == []


def test_a_package_that_cannot_be_installed_is_named_in_one_line() -> None:
    with pytest.raises(StackError) as err:
        packages.ensure(["faye-no-such-package-xyz"], update=False)
    message = str(err.value)
    assert "faye-no-such-package-xyz" in message and "apt-get install" in message
    assert "\n" not in message
