"""Fault injection: make the next N calls of one API method fail (429/500/503) or answer slowly.

Set through `POST /_emulator/faults` (see docs/emulator.md) or, at start, the env var
`FAYE_EMULATOR_FAULTS` holding one such JSON object or a list of them. Every API call of either
transport passes through :meth:`FaultTable.take`, which also counts it by RPC name
(`GET /_emulator/calls`, reset by `DELETE`): how benchmarks count the reads and writes of a deploy.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from faye_plugin.emulator.limits import error_info
from faye_plugin.exceptions import CloudRunApiError

# The RPC names the emulator answers; "*" matches every one of them.
METHODS = (
    "CreateService",
    "GetService",
    "ListServices",
    "UpdateService",
    "DeleteService",
    "GetRevision",
    "ListRevisions",
    "DeleteRevision",
    "GetOperation",
    "ListOperations",
    "DeleteOperation",
    "WaitOperation",
)
STATUS_NAMES = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
MESSAGES = {
    429: "Quota exceeded (injected fault).",
    500: "Internal error encountered (injected fault).",
    503: "The service is currently unavailable (injected fault).",
}


@dataclass
class Fault:
    """One rule: the next `count` calls of `method` wait `delay_seconds`, then fail with `status` (if set)."""

    method: str
    count: int = 1
    status: int | None = None
    delay_seconds: float = 0.0

    @classmethod
    def from_json(cls, raw: Any) -> Fault:
        """Build a fault from a request body; raise CloudRunApiError(400) on a bad one."""
        if not isinstance(raw, dict):
            raise CloudRunApiError(400, "INVALID_ARGUMENT", "A fault is a JSON object.")
        unknown = set(raw) - {"method", "count", "status", "delay_seconds"}
        if unknown:
            raise CloudRunApiError(400, "INVALID_ARGUMENT", f"Unknown fault fields: {sorted(unknown)}.")
        method = raw.get("method")
        if method != "*" and method not in METHODS:
            raise CloudRunApiError(400, "INVALID_ARGUMENT", f"method must be '*' or one of {list(METHODS)}.")
        status = raw.get("status")
        if status is not None and status not in STATUS_NAMES:
            raise CloudRunApiError(400, "INVALID_ARGUMENT", "status must be 429, 500 or 503.")
        count = raw.get("count", 1)
        delay = raw.get("delay_seconds", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise CloudRunApiError(400, "INVALID_ARGUMENT", "count must be an integer >= 1.")
        if not isinstance(delay, int | float) or isinstance(delay, bool) or not 0 <= delay <= 300:
            raise CloudRunApiError(400, "INVALID_ARGUMENT", "delay_seconds must be a number in [0, 300].")
        if status is None and not delay:
            raise CloudRunApiError(
                400, "INVALID_ARGUMENT", "A fault needs a status, a delay_seconds, or both."
            )
        return cls(method=method, count=count, status=status, delay_seconds=float(delay))

    def error(self) -> CloudRunApiError:
        """The error this fault answers with; a 429 carries Google's ErrorInfo (RATE_LIMIT_EXCEEDED)."""
        status = self.status or 500
        details = []
        if status == 429:
            details = [error_info("RATE_LIMIT_EXCEEDED", {"service": "run.googleapis.com"})]
        return CloudRunApiError(status, STATUS_NAMES[status], MESSAGES[status], details=details)


class FaultTable:
    """The pending faults, consumed in the order they were added, and the calls seen (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._calls: Counter[str] = Counter()

    def add(self, fault: Fault) -> None:
        """Queue one fault rule."""
        with self._lock:
            self._faults.append(fault)

    def load_env(self, text: str | None) -> None:
        """Queue the faults of `FAYE_EMULATOR_FAULTS` (one object or a list); raise ValueError if bad."""
        if not text:
            return
        try:
            raw = json.loads(text)
            for item in raw if isinstance(raw, list) else [raw]:
                self.add(Fault.from_json(item))
        except (json.JSONDecodeError, CloudRunApiError) as err:
            raise ValueError(f"FAYE_EMULATOR_FAULTS is invalid: {err}") from err

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        """Return the pending fault rules as JSON-able dicts."""
        with self._lock:
            return [asdict(f) for f in self._faults]

    def calls(self, *, reset: bool = False) -> dict[str, int]:
        """How often each RPC was called since the start or the last reset; ``reset`` starts again."""
        with self._lock:
            seen = dict(self._calls)
            if reset:
                self._calls.clear()
            return seen

    def take(self, method: str) -> Fault | None:
        """Count one call of `method`; consume one call of the first rule matching it and return it."""
        with self._lock:
            self._calls[method] += 1
            for fault in self._faults:
                if fault.method in ("*", method):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None
