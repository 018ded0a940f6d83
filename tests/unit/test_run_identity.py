"""Readable run ids: which service, PR and commit a run is for, valid under Airflow's run_id rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from faye_plugin.run_identity import is_valid_run_id, run_id_for

AT = datetime(2026, 12, 1, 21, 14, 46, 123456, tzinfo=UTC)


def test_run_id_names_service_pr_sha_and_utc_time() -> None:
    sha = "74b5f9f0c1d2e3f405162738495a6b7c8d9e0f1a"
    assert run_id_for("hello", 777, sha, AT) == "hello-pr-777-74b5f9f-20261201T211446.123Z"


def test_run_id_time_is_utc_whatever_the_zone() -> None:
    local = AT.astimezone(timezone(timedelta(hours=-5)))
    assert run_id_for("hello", 1, "abcdef1", local) == run_id_for("hello", 1, "abcdef1", AT)


def test_two_triggers_a_millisecond_apart_differ() -> None:
    later = AT + timedelta(milliseconds=1)
    assert run_id_for("hello", 1, "abcdef1", AT) != run_id_for("hello", 1, "abcdef1", later)


def test_airflow_refuses_what_is_valid_here_refuses() -> None:
    assert not is_valid_run_id("scheduled__hello")
    assert not is_valid_run_id("a..b")
    assert not is_valid_run_id("hello pr 1")
    assert is_valid_run_id("manual__2026-12-01T21:14:46.123+00:00")


@given(
    service=st.text(min_size=0, max_size=40),
    pr=st.integers(min_value=1, max_value=10**9),
    sha=st.text(min_size=0, max_size=50),
)
def test_every_built_id_is_valid(service: str, pr: int, sha: str) -> None:
    run_id = run_id_for(service, pr, sha, AT)
    assert is_valid_run_id(run_id)
    assert re.fullmatch(r"[a-z0-9-]+-pr-\d+-[0-9a-fnosh]+-\d{8}T\d{6}\.\d{3}Z", run_id)


def test_a_teardown_or_rollback_run_id_names_its_action() -> None:
    from datetime import UTC, datetime

    from faye_plugin.run_identity import action_run_id, is_valid_run_id

    at = datetime(2026, 12, 1, 21, 14, 46, 123000, tzinfo=UTC)
    assert action_run_id("teardown", "hello", 7, at) == "hello-pr-7-teardown-20261201T211446.123Z"
    assert is_valid_run_id(action_run_id("rollback", "Hello_World", 7))
