"""Supervised processes: start in their own session, remember them in pid files, stop only our own.

Each process runs in a new session (``setsid``), so its pid is also its process-group id and
everything it forks stays in that group. A pid file records the pid and the command line. faye
signals a group only when

* the pid file is its own (in the stack's ``run/`` folder), and
* the leader's ``/proc/<pid>/cmdline`` still equals the recorded command line, or the leader is
  gone but members of *that session* remain (Linux never reuses a pid as long as a process group
  or session with that id exists, so those members are necessarily the ones we started).

A pid whose command line no longer matches (the process died and the pid was reused) is never
signalled; its stale pid file is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from faye_plugin.exceptions import StackError


@dataclass(frozen=True)
class ProcessSpec:
    """What to run for one part of the stack."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log: Path
    # Titles the program may give itself with setproctitle (e.g. "airflow api_server"): its
    # cmdline then starts with one of these instead of equalling argv.
    titles: tuple[str, ...] = ()


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:  # a zombie or a kernel thread
        return None
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """Return (state, pgrp, session, start time in clock ticks) of ``pid``, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2]), int(fields[3]), int(fields[19])


def matches(cmdline: list[str] | None, argv: Sequence[str], titles: Sequence[str]) -> bool:
    """Return True when ``cmdline`` is what we started: ``argv`` itself, or one of its own titles."""
    if cmdline is None:
        return False
    if cmdline == list(argv):
        return True
    shown = " ".join(cmdline).strip()
    return any(shown.startswith(title) for title in titles)


def session_members(sid: int) -> list[int]:
    """Return the live (non-zombie) pids whose session id is ``sid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st is not None and st[2] == sid and st[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our child (an in-process ``up`` leaves children to this process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


class Supervisor:
    """Start, find and stop the processes recorded in one ``run/`` folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _record(self, name: str) -> dict[str, object] | None:
        path = self._pid_file(name)
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            return None
        return data

    def names(self) -> list[str]:
        """Return the names of every process with a pid file."""
        if not self.run_dir.is_dir():
            return []
        return sorted(p.stem for p in self.run_dir.glob("*.pid"))

    def pid(self, name: str) -> int | None:
        """Return the pid of ``name`` if the process we recorded still runs (same command line)."""
        rec = self._record(name)
        if rec is None:
            return None
        pid = int(rec["pid"])  # type: ignore[call-overload]
        _reap(pid)
        st = _stat(pid)
        if st is None or st[0] in ("Z", "X"):
            return None
        if rec.get("starttime") not in (None, st[3]):
            return None  # the pid now belongs to a process started later
        argv = rec.get("argv")
        titles = rec.get("titles") or []
        if not isinstance(argv, list) or not isinstance(titles, list):
            return None
        return pid if matches(_cmdline(pid), argv, titles) else None

    def recorded_pids(self) -> dict[str, int]:
        """Return every pid named in our pid files (running or not)."""
        out = {}
        for name in self.names():
            rec = self._record(name)
            if rec is not None:
                out[name] = int(rec["pid"])  # type: ignore[call-overload]
        return out

    def start(self, spec: ProcessSpec) -> int:
        """Start ``spec`` unless it already runs; return its pid."""
        running = self.pid(spec.name)
        if running is not None:
            return running
        self.run_dir.mkdir(parents=True, exist_ok=True)
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log, "ab") as log:
            try:
                proc = subprocess.Popen(
                    list(spec.argv),
                    env=dict(spec.env),
                    cwd=spec.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as err:
                raise StackError(f"cannot start {spec.name} ({spec.argv[0]}): {err}") from err
        # Wait until the child has exec'd (its cmdline is argv), so the record describes it.
        for _ in range(200):
            if matches(_cmdline(proc.pid), spec.argv, spec.titles) or proc.poll() is not None:
                break
            time.sleep(0.005)
        st = _stat(proc.pid)
        record = {
            "pid": proc.pid,
            "argv": list(spec.argv),
            "titles": list(spec.titles),
            "starttime": st[3] if st else None,
            "started": time.time(),
        }
        self._pid_file(spec.name).write_text(json.dumps(record))
        return proc.pid

    def exited(self, name: str) -> bool:
        """Return True when ``name`` has a pid file but its process is gone."""
        return self._record(name) is not None and self.pid(name) is None

    def _ours(self, name: str) -> tuple[int, list[int]] | None:
        """Return (session id, live members) of ``name`` when they are provably ours, else None."""
        rec = self._record(name)
        if rec is None:
            return None
        sid = int(rec["pid"])  # type: ignore[call-overload]
        members = session_members(sid)
        if self.pid(name) is None:
            # The leader is gone (or its pid now runs something else). Members of the session other
            # than the pid itself can only be ours: the kernel does not hand out a pid while a
            # session or group with that id lives. A lone pid == sid could be a stranger: skip it.
            members = [p for p in members if p != sid]
        return (sid, members) if members else None

    def stop(self, name: str, grace: float = 15.0) -> bool:
        """Stop ``name``'s whole process group: SIGTERM, then SIGKILL after ``grace`` seconds.

        Return True when something of ours was signalled. A pid file whose process is gone, or whose
        pid now belongs to another program, is just removed.
        """
        return bool(self.stop_many([name], grace))

    def stop_many(self, names: Sequence[str], grace: float = 15.0) -> list[str]:
        """Stop several processes at once (SIGTERM to all, wait, SIGKILL what is left).

        Return the names of those that were running and were signalled.
        """
        targets: dict[str, int] = {}
        for name in names:
            ours = self._ours(name)
            if ours is None:
                self._pid_file(name).unlink(missing_ok=True)
                continue
            sid, members = ours
            targets[name] = sid
            self._signal(sid, members, signal.SIGTERM)
        deadline = time.monotonic() + grace
        killed = False
        while True:
            left = {}
            for name, sid in targets.items():
                _reap(sid)
                members = session_members(sid)
                if members:
                    left[name] = members
            if not left:
                break
            if time.monotonic() > deadline:
                if killed:
                    raise StackError(f"{', '.join(left)} survived SIGKILL; pids {left}")
                for name, members in left.items():
                    self._signal(targets[name], members, signal.SIGKILL)
                killed = True
                deadline = time.monotonic() + 5
            time.sleep(0.1)
        for name in targets:
            self._pid_file(name).unlink(missing_ok=True)
        return list(targets)

    @staticmethod
    def _signal(sid: int, members: list[int], sig: signal.Signals) -> None:
        # The group first (the common case: nothing left the group), then any member that made a
        # group of its own inside our session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, sig)
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Return True when nothing listens on ``host:port`` and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
