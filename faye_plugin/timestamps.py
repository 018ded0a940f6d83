"""Times a person reads (task logs, XCom): UTC ISO 8601 with a ``Z``, never epoch seconds.

``2026-12-02T01:02:03Z`` in a log line; ``2026-12-02T01:02:03.123Z`` where a record is compared to
the millisecond (the lease XCom: one hand-over of a test server takes a fraction of a second).
Machine state that only faye reads (a lease container's labels, a preview's annotations) keeps its
own encoding; these helpers are for what is shown.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(epoch: float, *, millis: bool = False) -> str:
    """``epoch`` seconds as ``2026-12-02T01:02:03Z`` (``...03.123Z`` with ``millis``)."""
    at = datetime.fromtimestamp(epoch, UTC)
    if millis:
        return f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z"
    return f"{at:%Y-%m-%dT%H:%M:%S}Z"


def epoch_of(text: str) -> float:
    """The epoch seconds of an ISO 8601 time (``Z`` or an offset; a naive time is taken as UTC)."""
    at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def seconds_text(seconds: float) -> str:
    """A duration as a person reads it: ``0.4 s``, ``12.3 s``, ``2 min 05 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"
