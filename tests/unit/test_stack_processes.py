"""Supervisor: real processes in their own sessions; only our own recorded groups are ever signalled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faye_plugin.stack.processes import ProcessSpec, Supervisor, port_free, session_members

SLEEPER = [
    sys.executable,
    "-c",
    "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)",
]


def _spec(tmp_path: Path, name: str = "sleeper", argv: list[str] | None = None) -> ProcessSpec:
    return ProcessSpec(
        name=name, argv=argv or SLEEPER, env=dict(os.environ), cwd=tmp_path, log=tmp_path / "x.log"
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def stranger():
    """A process faye did not start (a child of the test, in the test's own session)."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def test_start_is_idempotent_and_stop_takes_the_whole_group(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "run")
    pid = sup.start(_spec(tmp_path))
    assert sup.start(_spec(tmp_path)) == pid  # a second start reuses it
    assert sup.pid("sleeper") == pid
    deadline = time.monotonic() + 10
    while len(session_members(pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = session_members(pid)
    assert len(members) == 2  # the leader and its `sleep` child
    assert sup.stop("sleeper", grace=5) is True
    assert not any(_alive(p) for p in members)
    assert sup.names() == []


def test_a_pid_file_naming_a_stranger_is_never_signalled(tmp_path: Path, stranger: subprocess.Popen) -> None:
    sup = Supervisor(tmp_path / "run")
    sup.run_dir.mkdir(parents=True)
    # Our record says we started SLEEPER with this pid; the pid now runs `sleep 300` (pid reuse).
    (sup.run_dir / "ghost.pid").write_text(json.dumps({"pid": stranger.pid, "argv": SLEEPER}))
    assert sup.pid("ghost") is None
    assert sup.stop("ghost", grace=1) is False
    assert stranger.poll() is None and _alive(stranger.pid)
    assert sup.names() == []  # the stale pid file is gone


def test_same_cmdline_but_another_start_time_is_not_ours(tmp_path: Path, stranger: subprocess.Popen) -> None:
    sup = Supervisor(tmp_path / "run")
    sup.run_dir.mkdir(parents=True)
    record = {"pid": stranger.pid, "argv": ["sleep", "300"], "starttime": 1}
    (sup.run_dir / "ghost.pid").write_text(json.dumps(record))
    assert sup.pid("ghost") is None
    assert sup.stop("ghost", grace=1) is False
    assert _alive(stranger.pid)


def test_a_dead_process_is_reported_exited(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "run")
    pid = sup.start(_spec(tmp_path, "quick", [sys.executable, "-c", "pass"]))
    deadline = time.monotonic() + 10
    while sup.pid("quick") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sup.exited("quick")
    while _alive(pid) and time.monotonic() < deadline:  # an exiting process has no cmdline already
        time.sleep(0.05)
    assert not _alive(pid)
    assert sup.stop("quick") is False


def test_port_free_sees_a_listener() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_free(port) is False
    assert port_free(port) is True


def test_orphans_of_a_dead_leader_are_still_stopped(tmp_path: Path) -> None:
    import signal

    sup = Supervisor(tmp_path / "run")
    pid = sup.start(_spec(tmp_path))
    deadline = time.monotonic() + 10
    while len(session_members(pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    (child,) = [p for p in session_members(pid) if p != pid]
    os.kill(pid, signal.SIGKILL)  # the leader dies; its `sleep` child lives on in our session
    os.waitpid(pid, 0)
    assert sup.pid("sleeper") is None and _alive(child)
    assert sup.stop("sleeper", grace=5) is True
    assert not _alive(child)
