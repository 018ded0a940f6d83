"""Wait until a preview answers through the proxy (2xx), without holding a worker while it does not."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from faye_plugin.triggers import settle_deadline
from faye_plugin.triggers.preview import PreviewReadyTrigger, probe

if TYPE_CHECKING:
    from airflow.sdk import Context


class WaitForPreviewOperator(BaseOperator):
    """Return ``url`` once it answers 2xx.

    The first look is made on the worker (after a deploy the preview usually answers at once, and a
    round trip through the triggerer costs seconds); if it does not answer, the task defers to
    ``PreviewReadyTrigger`` and frees its worker slot while it waits.

    :param url: the preview URL, e.g. ``http://a.preview.localhost:28801``. (templated)
    :param timeout_seconds: fail when it has not answered 2xx after this long.
    :param poll_interval: seconds between two requests.
    """

    template_fields = ("url",)
    ui_color = "#e8f8f5"

    def __init__(
        self, *, url: str, timeout_seconds: float = 300.0, poll_interval: float = 1.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> str:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"not a preview URL: {self.url!r}")
        status = probe(self.url)
        if status is not None and 200 <= status < 300:
            self.log.info("%s answers %s", self.url, status)
            return self.url
        self.log.info("%s answers %s: waiting (deferred) for a 2xx", self.url, status)
        self.defer(
            trigger=PreviewReadyTrigger(
                self.url, self.poll_interval, self.timeout_seconds, not_before=settle_deadline()
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout_seconds + 60),
        )
        raise AssertionError("defer() returns only by raising")  # pragma: no cover

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        if event.get("status") != "ready":
            raise TimeoutError(
                f"{self.url} did not answer 2xx within {self.timeout_seconds:.0f}s "
                f"(last status: {event.get('last_status')})"
            )
        self.log.info("%s answers %s", self.url, event.get("last_status"))
        return self.url
