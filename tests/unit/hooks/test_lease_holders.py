"""When a lease's holder counts as alive (the REST side is exercised on the stack)."""

from __future__ import annotations

from faye_plugin.catalogue import DockerHost
from faye_plugin.hooks.lease_holders import TaskHolder, holder_alive
from faye_plugin.hooks.test_servers import TestServerHook, lease_from_labels, lease_labels


def test_a_task_holder_is_parsed_and_anything_else_is_not() -> None:
    holder = TaskHolder.parse("faye_test/manual__2026-12-01T10:00:00+00:00/test.run_tests/2")
    assert holder == TaskHolder("faye_test", "manual__2026-12-01T10:00:00+00:00", "test.run_tests", 2)
    assert str(holder) == "faye_test/manual__2026-12-01T10:00:00+00:00/test.run_tests/2"
    for other in ("squatter-test-1", "pytest/after-kill", "a/b/c/x", "a//c/1", "a/b/c/1/e"):
        assert TaskHolder.parse(other) is None, other


def test_only_the_same_try_in_a_running_state_is_alive() -> None:
    holder = TaskHolder("faye_test", "r", "test.run_tests", 2)
    for state in ("running", "deferred", "queued", "scheduled", "up_for_reschedule", "restarting"):
        assert holder_alive(holder, state, 2), state
    for state in ("failed", "success", "up_for_retry", "upstream_failed", "skipped", "removed", None):
        assert not holder_alive(holder, state, 2), state
    assert not holder_alive(holder, "running", 3)  # a later try runs: this one is over
    assert not holder_alive(holder, None, None)  # the run was deleted


class _Holders:
    def __init__(self, alive: bool) -> None:
        self.alive = alive
        self.asked: list[TaskHolder] = []

    def is_alive(self, holder: TaskHolder) -> bool:
        self.asked.append(holder)
        return self.alive


def test_a_task_lease_is_judged_by_its_holder_never_by_its_age() -> None:
    server = DockerHost(name="t", docker_url="unix:///nowhere.sock")
    old = lease_from_labels("t", "cid", lease_labels("faye_test/r/test.run_tests/1", 0.0, 1))
    alive, dead = _Holders(True), _Holders(False)
    assert old.expired()  # long past its expiry ...
    assert not TestServerHook(server, holders=alive).is_stale(old)  # type: ignore[arg-type]
    assert TestServerHook(server, holders=dead).is_stale(old)  # type: ignore[arg-type]
    fresh = lease_from_labels("t", "cid", lease_labels("faye_test/r/test.run_tests/1", 1e12, 1))
    assert TestServerHook(server, holders=dead).is_stale(fresh)  # ... or far from it
    # a holder that is not a task instance is judged by its expiry, without asking Airflow
    manual = lease_from_labels("t", "cid", lease_labels("squatter", 0.0, 1))
    assert TestServerHook(server, holders=alive).is_stale(manual)  # type: ignore[arg-type]
    assert [str(h) for h in alive.asked] == ["faye_test/r/test.run_tests/1"]
