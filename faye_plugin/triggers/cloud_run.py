"""Wait for a Cloud Run long-running operation in the triggerer, so no worker slot is held meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class CloudRunOperationTrigger(BaseTrigger):
    """Poll one Cloud Run operation until it is done; yield ``{"status", "operation", "message"}``.

    The google-cloud-run REST client has no async transport, so each poll runs the sync hook in a thread
    (as the google provider's own Cloud Run async hook does). Transient API errors (the hook's
    ``TRANSIENT_ERRORS``) are retried by the hook and then by the next poll; anything else ends the wait
    with ``status: "error"``.

    :param operation: the operation's full name (``projects/p/locations/r/operations/x``).
    :param gcp_conn_id: the google connection the hook uses.
    :param poll_interval: seconds between polls.
    :param timeout: seconds after which the wait fails.
    """

    def __init__(
        self,
        operation: str,
        gcp_conn_id: str = "faye_cloud_run",
        poll_interval: float = 2.0,
        timeout: float = 900.0,
    ) -> None:
        super().__init__()
        self.operation = operation
        self.gcp_conn_id = gcp_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "faye_plugin.triggers.cloud_run.CloudRunOperationTrigger",
            {
                "operation": self.operation,
                "gcp_conn_id": self.gcp_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from faye_plugin.hooks.cloud_run import TRANSIENT_ERRORS, CloudRunPreviewHook

        hook = CloudRunPreviewHook(gcp_conn_id=self.gcp_conn_id)
        deadline = time.monotonic() + self.timeout
        polls = 0
        while True:
            # Sleep first: the operator polled just before deferring, and an event fired at once can
            # race the scheduler's handling of the deferral.
            await asyncio.sleep(self.poll_interval)
            polls += 1
            try:
                state = await asyncio.to_thread(hook.get_operation, self.operation)
            except TRANSIENT_ERRORS as err:
                self.log.warning("Polling %s failed transiently (%s); polling again", self.operation, err)
                state = {"done": False, "error": None}
            except Exception as err:
                yield TriggerEvent(
                    {
                        "status": "error",
                        "operation": self.operation,
                        "message": f"{type(err).__name__}: {err}",
                    }
                )
                return
            if state["done"]:
                status = "error" if state["error"] else "success"
                yield TriggerEvent(
                    {
                        "status": status,
                        "operation": self.operation,
                        "message": state["error"] or f"done after {polls} poll(s)",
                    }
                )
                return
            if time.monotonic() > deadline:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "operation": self.operation,
                        "message": f"not done after {self.timeout:.0f}s",
                    }
                )
                return
