"""faye's triggers, and the one rule they share about when they may fire."""

from __future__ import annotations

import asyncio
import time

#: How long after a deferral a trigger may fire at the soonest. Airflow 3.3.2 races a trigger that
#: fires within a second or two of the deferral against the scheduler's own handling of it: the
#: resumed task ran, then was failed by the late "deferred" bookkeeping ("TI was not in the running
#: state"; seen when a test server freed right after a test deferred).
DEFERRAL_SETTLE_SECONDS = 5.0


def settle_deadline() -> float:
    """The ``not_before`` (epoch seconds) for a trigger made by a task deferring now."""
    return time.time() + DEFERRAL_SETTLE_SECONDS


async def wait_until(not_before: float) -> None:
    """Sleep until ``not_before`` (no-op once it has passed, e.g. when a triggerer re-runs a trigger)."""
    remaining = not_before - time.time()
    if remaining > 0:
        await asyncio.sleep(remaining)
