"""Expected errors end a task as one line (no traceback), unexpected ones keep theirs."""

from __future__ import annotations

from typing import Any

import pytest

from faye_plugin.exceptions import CatalogueError, SlotBusyError
from faye_plugin.task_errors import ExpectedFailure, explain, guard


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def error(self, fmt: str, *args: Any) -> None:
        self.lines.append(fmt % args)


def test_expected_error_is_one_line_that_names_what_to_do() -> None:
    log = Log()

    def execute(context: Any) -> None:
        raise CatalogueError("unknown service 'nope': the catalogue declares hello")

    with pytest.raises(ExpectedFailure) as info:
        guard(execute, log)({})
    assert isinstance(info.value, SystemExit)  # Airflow's runner logs SystemExit without a traceback
    assert info.value.__suppress_context__ and info.value.__cause__ is None
    assert log.lines == [
        "unknown service 'nope': the catalogue declares hello - fix the service or slot in the request "
        "(or the catalogue), then trigger again"
    ]
    assert isinstance(info.value.error, CatalogueError)


def test_a_cloud_run_refusal_is_expected_too() -> None:
    from google.api_core.exceptions import InvalidArgument

    line = explain(InvalidArgument("tag pr-1 is not a DNS label"))
    assert line.startswith(
        "Cloud Run refused the request: 400 tag pr-1 is not a DNS label - fix what it names"
    )


def test_unexpected_errors_keep_their_traceback() -> None:
    def execute(context: Any) -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        guard(execute, Log())({})


def test_airflow_control_flow_passes_through() -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    def execute(context: Any) -> None:
        raise AirflowSkipException("nothing to build")

    with pytest.raises(AirflowSkipException):
        guard(execute, Log())({})


def test_guard_once() -> None:
    def execute(context: Any) -> str:
        return "ok"

    guarded = guard(execute)
    assert guard(guarded) is guarded and guarded({}) == "ok"


def test_slot_busy_names_the_way_out() -> None:
    assert "ask for another slot" in explain(SlotBusyError("slot a is held by PR 2"))
