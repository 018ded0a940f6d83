"""``faye deploy`` checks a request locally, reporting every problem at once, before any network call."""

from __future__ import annotations

import pytest

from faye_plugin.cli.deploy import conf_from_args
from faye_plugin.cli.main import build_parser, main


def test_every_bad_field_is_reported_before_any_call(capsys: pytest.CaptureFixture[str]) -> None:
    # --url points nowhere reachable: reaching it would fail differently than the validation does
    code = main(
        ["deploy", "--service", "Bad_Name", "--pr", "0", "--sha", "xyz", "--url", "http://127.0.0.1:9"]
    )
    err = capsys.readouterr().err
    assert code == 1
    for field in ("service", "pr", "git_sha"):
        assert f"{field}:" in err


def test_conf_from_args_keeps_only_given_options() -> None:
    args = build_parser().parse_args(
        ["deploy", "--service", "hello", "--pr", "3", "--sha", "a" * 40, "--slot", "b", "--force-build"]
    )
    assert conf_from_args(args) == {
        "service": "hello",
        "pr": 3,
        "git_sha": "a" * 40,
        "slot": "b",
        "force_build": True,
    }


def test_plugin_registers_its_macros() -> None:
    from faye_plugin.plugin import FayePlugin

    assert FayePlugin.name == "faye"
    assert {m.__name__ for m in FayePlugin.macros} == {"preview_tag", "slot_hostname"}
    assert FayePlugin.macros[0](12) == "pr-12"
