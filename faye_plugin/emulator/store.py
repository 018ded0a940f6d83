"""The emulator's state: services, revisions, operations and per-revision runtime facts.

Everything lives in memory behind one re-entrant lock and is written to `<state dir>/cloud-run.json`
after each change (temp file + rename, so a crash never leaves half a file). That file is the commit
point; it holds everything but the bodies of finished operations, which never change again and are
appended once each to `cloud-run-operations.jsonl` (rewritten when it holds twice the operations
kept). Each finished operation carries a whole Service: rewriting 500 of them on every change made
one write at 2,000 tags cost seconds.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from faye_plugin.emulator import codec

STATE_FILE = "cloud-run.json"
OPERATIONS_FILE = "cloud-run-operations.jsonl"
MAX_OPERATIONS = 500
SAME_RESPONSE = "faye.responseIsMetadata"  # in the operations file only, never in an answer


class Store:
    """Resources keyed by full resource name, plus `meta` (per revision: runtime state, template)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE
        self.operations_path = state_dir / OPERATIONS_FILE
        self._logged: set[str] = set()  # finished operations whose body is in the operations file
        self._log_lines = 0
        self.lock = threading.RLock()
        self.services: dict[str, dict[str, Any]] = {}
        self.revisions: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.counters: dict[str, int] = {}

    def load(self) -> None:
        """Read the state file (and the finished operations it names) if there is one."""
        if not self.path.exists():
            return
        data = json.loads(self.path.read_text())
        logged: dict[str, dict[str, Any]] = {}
        if self.operations_path.exists():
            for line in self.operations_path.read_text().splitlines():
                if line.strip():  # a line cut off by a crash is after the last commit: skipped
                    try:
                        op = _unline(line)
                    except ValueError:
                        continue
                    logged[op["name"]] = op
                    self._log_lines += 1
        pending = data.get("operations", {})
        order = data.get("operationOrder", list(pending))  # older files held every operation there
        with self.lock:
            self.services = data.get("services", {})
            self.revisions = data.get("revisions", {})
            self.operations = {n: logged.get(n) or pending[n] for n in order if n in logged or n in pending}
            self._logged = {n for n, op in self.operations.items() if op["done"] and n in logged}
            self.meta = data.get("meta", {})
            self.counters = data.get("counters", {})

    def save(self) -> None:
        """Write the state atomically (finished operations: once each, to the operations file)."""
        with self.lock:
            self.operations = dict(list(self.operations.items())[-MAX_OPERATIONS:])
            self._log_finished()
            text = codec.dumps(
                {
                    "services": self.services,
                    "revisions": self.revisions,
                    "operations": {n: o for n, o in self.operations.items() if n not in self._logged},
                    "operationOrder": list(self.operations),
                    "meta": self.meta,
                    "counters": self.counters,
                }
            )
            self._replace(self.path, text)

    def _log_finished(self) -> None:
        """Append the newly finished operations to the operations file (rewrite it when it is long)."""
        fresh = [o for n, o in self.operations.items() if o["done"] and n not in self._logged]
        if not fresh:
            return
        if self._log_lines + len(fresh) > 2 * MAX_OPERATIONS:
            done = [o for o in self.operations.values() if o["done"]]
            self._replace(self.operations_path, "".join(_line(o) for o in done))
            self._logged, self._log_lines = {o["name"] for o in done}, len(done)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Private like the state file (mkstemp's 0600): operations carry whole services, env included.
        fd = os.open(self.operations_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write("".join(_line(o) for o in fresh))
            handle.flush()
            os.fsync(handle.fileno())
        self._logged |= {o["name"] for o in fresh}
        self._log_lines += len(fresh)

    def _replace(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".cloud-run-", dir=path.parent)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def revisions_of(self, service_name: str) -> list[dict[str, Any]]:
        """Return the revisions of one service, oldest first."""
        with self.lock:
            prefix = service_name + "/revisions/"
            found = [r for n, r in self.revisions.items() if n.startswith(prefix)]
            return sorted(found, key=lambda r: (r.get("createTime", ""), r["name"]))

    def next_counter(self, service_name: str) -> int:
        """Return the next revision sequence number of a service (1, 2, ...)."""
        with self.lock:
            self.counters[service_name] = self.counters.get(service_name, 0) + 1
            return self.counters[service_name]


def _line(op: dict[str, Any]) -> str:
    """A finished operation as one line; a response that is its metadata is written once."""
    if op.get("response") is op["metadata"]:
        op = {k: v for k, v in op.items() if k != "response"} | {SAME_RESPONSE: True}
    return codec.dumps(op) + "\n"


def _unline(line: str) -> dict[str, Any]:
    op: dict[str, Any] = json.loads(line)
    if op.pop(SAME_RESPONSE, False):
        op["response"] = op["metadata"]
    return op
