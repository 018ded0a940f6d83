from __future__ import annotations

from faye_plugin.hooks.test_servers import lease_from_labels, lease_labels
from faye_plugin.operators.test_runner import result_line
from faye_plugin.timestamps import epoch_of, seconds_text, utc_iso

# 2026-12-02T01:02:03.456Z
WHEN = 1796173323.456


def test_times_are_utc_iso_with_a_z() -> None:
    assert utc_iso(WHEN) == "2026-12-02T01:02:03Z"
    assert utc_iso(WHEN, millis=True) == "2026-12-02T01:02:03.456Z"
    assert utc_iso(0) == "1970-01-01T00:00:00Z"


def test_an_iso_time_reads_back_to_its_epoch() -> None:
    assert abs(epoch_of(utc_iso(WHEN, millis=True)) - WHEN) < 1e-3
    assert epoch_of("2026-12-02T01:02:03Z") == 1796173323.0
    assert epoch_of("2026-12-02T02:02:03+01:00") == 1796173323.0
    assert epoch_of("2026-12-02T01:02:03") == 1796173323.0  # naive: UTC


def test_durations_read_as_seconds_then_minutes() -> None:
    assert seconds_text(0.44) == "0.4 s"
    assert seconds_text(59.94) == "59.9 s"
    assert seconds_text(125.2) == "2 min 05 s"


def test_the_lease_record_a_person_reads_has_no_epochs() -> None:
    lease = lease_from_labels("test-1", "cid", lease_labels("faye_test/r/test.run_tests/1", WHEN, 120))
    assert lease.to_dict() == {
        "server": "test-1",
        "holder": "faye_test/r/test.run_tests/1",
        "acquired": "2026-12-02T01:02:03.456Z",
        "expires": "2026-12-02T01:04:03.456Z",
        "container_id": "cid",
    }


def _line(passed: bool, exit_code: int, seconds: float, timed_out_after: str | None = None) -> str:
    return result_line(
        passed=passed,
        exit_code=exit_code,
        server="test-1",
        seconds=seconds,
        service="hello",
        pr=7,
        git_sha="74b5f9f" + "0" * 33,
        timed_out_after=timed_out_after,
    )


def test_one_result_line_says_how_the_tests_ended() -> None:
    assert (
        _line(True, 0, 3.21)
        == "tests passed: exit code 0 on test server test-1 in 3.2 s (hello PR 7 at 74b5f9f)"
    )
    assert (
        _line(False, 3, 0.9)
        == "tests failed: exit code 3 on test server test-1 in 0.9 s (hello PR 7 at 74b5f9f)"
    )
    assert _line(False, 137, 121, "2 min") == (
        "tests timed out after 2 min (stopped): exit code 137 on test server test-1 in 2 min 01 s "
        "(hello PR 7 at 74b5f9f)"
    )
