from __future__ import annotations

from datetime import UTC, datetime

from faye_plugin.cli.logs import format_entry, task_order


def _t(second: int) -> datetime:
    return datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)


def test_tasks_come_in_topological_order_ties_by_start_time() -> None:
    downstream = {
        "validate": ["check_image"],
        "check_image": ["build.build_image", "skip_build"],
        "build.build_image": ["build.push_image"],
        "build.push_image": ["deploy"],
        "skip_build": ["deploy"],
        "deploy": [],
    }
    started = {"validate": _t(1), "check_image": _t(2), "skip_build": _t(3), "build.build_image": _t(4)}
    assert task_order(downstream, started) == [
        "validate",
        "check_image",
        "skip_build",
        "build.build_image",
        "build.push_image",
        "deploy",
    ]
    started["build.build_image"] = _t(2)
    assert task_order(downstream, started)[2] == "build.build_image"


def test_airflow_markers_are_dropped_and_levels_shown() -> None:
    assert format_entry({"event": "::group::Log message source details", "sources": ["x"]}) is None
    assert format_entry({"event": "::endgroup::"}) is None
    assert format_entry({"event": "/logs/dag_id=x/attempt=1.log"}) is None
    assert format_entry({"event": "::group::Pre Execute", "level": "info", "timestamp": "t"}) is None
    assert format_entry({"event": "STEP 1/2", "level": "info", "timestamp": "t"}) == "STEP 1/2"
    assert (
        format_entry({"event": "build failed: x", "level": "error", "timestamp": "t"})
        == "ERROR build failed: x"
    )
    assert format_entry("plain") == "plain"
    failed = {
        "event": "Task failed with exception",
        "level": "error",
        "timestamp": "t",
        "error_detail": [{"exc_type": "InvalidRequestError", "exc_value": "unknown field(s): colour"}],
    }
    assert format_entry(failed) == (
        "ERROR Task failed with exception: InvalidRequestError: unknown field(s): colour"
    )
