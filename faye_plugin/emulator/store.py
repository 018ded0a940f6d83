"""The emulator's state: services, revisions, operations and per-revision runtime facts.

Everything lives in memory behind one re-entrant lock and is written to `<state dir>/cloud-run.json`
after each change (temp file + rename, so a crash never leaves half a file).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

STATE_FILE = "cloud-run.json"
MAX_OPERATIONS = 500


class Store:
    """Resources keyed by full resource name, plus `meta` (per revision: runtime state, template)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE
        self.lock = threading.RLock()
        self.services: dict[str, dict[str, Any]] = {}
        self.revisions: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.counters: dict[str, int] = {}

    def load(self) -> None:
        """Read the state file if there is one."""
        if not self.path.exists():
            return
        data = json.loads(self.path.read_text())
        with self.lock:
            self.services = data.get("services", {})
            self.revisions = data.get("revisions", {})
            self.operations = data.get("operations", {})
            self.meta = data.get("meta", {})
            self.counters = data.get("counters", {})

    def save(self) -> None:
        """Write the whole state atomically."""
        with self.lock:
            ops = dict(list(self.operations.items())[-MAX_OPERATIONS:])
            self.operations = ops
            text = json.dumps({"services": self.services, "revisions": self.revisions, "operations": ops,
                               "meta": self.meta, "counters": self.counters}, indent=1, sort_keys=True)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".cloud-run-", dir=self.path.parent)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)

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
