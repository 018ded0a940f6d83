"""Wait, in the triggerer, until a preview answers through the proxy with a 2xx status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from faye_plugin.triggers import wait_until

#: Errors meaning "not up yet": keep polling. Anything else is a bug and propagates.
NOT_READY_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError,)


def local_target(url: str) -> tuple[str, dict[str, str]]:
    """Return the URL to connect to and the headers for ``url``.

    Python's resolver does not map ``*.localhost`` to the loopback address (browsers and curl do), so
    a ``http://a.preview.localhost:8000/`` URL is sent to ``127.0.0.1:8000`` with ``Host:
    a.preview.localhost:8000``. Other URLs are returned unchanged.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host != "localhost" and not host.endswith(".localhost"):
        return url, {}
    netloc = "127.0.0.1" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": parts.netloc}


def probe(url: str, timeout: float = 5.0) -> int | None:
    """GET ``url`` once; return its status code, or None when nothing answered."""
    target, headers = local_target(url)
    try:
        return httpx.get(target, headers=headers, timeout=timeout).status_code
    except NOT_READY_ERRORS:
        return None


class PreviewReadyTrigger(BaseTrigger):
    """Poll ``url`` until it answers 2xx; fire ``{"status": "ready"|"timeout", "url", "last_status"}``.

    :param url: the preview's public URL, e.g. ``http://a.preview.localhost:28801``.
    :param poll_interval: seconds between two requests.
    :param timeout_seconds: give up after this long and fire a ``timeout`` event.
    :param not_before: epoch seconds before which it never fires (``faye_plugin.triggers``).
    """

    def __init__(
        self, url: str, poll_interval: float = 1.0, timeout_seconds: float = 300.0, not_before: float = 0.0
    ) -> None:
        super().__init__()
        self.url = url
        self.poll_interval = poll_interval
        self.timeout_seconds = timeout_seconds
        self.not_before = not_before

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "url": self.url,
                "poll_interval": self.poll_interval,
                "timeout_seconds": self.timeout_seconds,
                "not_before": self.not_before,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        target, headers = local_target(self.url)
        deadline = time.monotonic() + self.timeout_seconds
        await wait_until(self.not_before)  # never within seconds of the deferral (faye_plugin.triggers)
        last: int | None = None
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                try:
                    last = (await client.get(target, headers=headers)).status_code
                except NOT_READY_ERRORS:
                    last = None
                if last is not None and 200 <= last < 300:
                    yield TriggerEvent({"status": "ready", "url": self.url, "last_status": last})
                    return
                if time.monotonic() >= deadline:
                    yield TriggerEvent({"status": "timeout", "url": self.url, "last_status": last})
                    return
                await asyncio.sleep(self.poll_interval)
