"""Wait, in the triggerer, until a test server's lease is free (absent, or its holder gone)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from faye_plugin.catalogue import DockerHost
from faye_plugin.hooks.lease_holders import LeaseHolderHook
from faye_plugin.hooks.test_servers import DEFAULT_LEASE_IMAGE, free_servers
from faye_plugin.triggers import settle_deadline, wait_until


class TestServerFreeTrigger(BaseTrigger):
    """Fire ``{"status": "free", "servers": [...]}`` once any of ``servers`` has no live lease (none,
    or one whose holder's task instance no longer runs: a SIGKILLed test frees its server so).

    The trigger only watches; the resumed task takes the lease itself (a trigger may run twice, so it
    must have no side effects). Served-in-order is the pool's job: a deferred test task keeps its
    pool slot when the pool counts deferred tasks (``include_deferred``).

    :param servers: the test servers as dicts (``DockerHost`` fields), JSON-serialisable.
    :param lease_image: the image lease containers are made of (unused by the check, kept for the hook).
    :param poll_interval: seconds between two looks at the servers.
    :param not_before: epoch seconds before which the trigger never fires (``faye_plugin.triggers``).
    """

    __test__ = False

    def __init__(
        self,
        servers: list[dict[str, Any]],
        lease_image: str = DEFAULT_LEASE_IMAGE,
        poll_interval: float = 1.0,
        not_before: float = 0.0,
    ) -> None:
        super().__init__()
        self.servers = servers
        self.lease_image = lease_image
        self.poll_interval = poll_interval
        self.not_before = not_before

    @classmethod
    def for_hosts(
        cls, hosts: tuple[DockerHost, ...], lease_image: str, poll_interval: float
    ) -> TestServerFreeTrigger:
        """The trigger for a task deferring now (it fires a few seconds from now at the soonest)."""
        return cls(
            [asdict(h) for h in hosts],
            lease_image=lease_image,
            poll_interval=poll_interval,
            not_before=settle_deadline(),
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "servers": self.servers,
                "lease_image": self.lease_image,
                "poll_interval": self.poll_interval,
                "not_before": self.not_before,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hosts = [DockerHost(**s) for s in self.servers]
        started = time.monotonic()
        await wait_until(self.not_before)
        holders = LeaseHolderHook()  # one REST login for the whole wait
        while True:
            free = await asyncio.to_thread(free_servers, hosts, self.lease_image, holders)
            if free:
                self.log.info("free test server(s): %s", ", ".join(free))
                yield TriggerEvent(
                    {"status": "free", "servers": free, "waited": round(time.monotonic() - started, 3)}
                )
                return
            await asyncio.sleep(self.poll_interval)
