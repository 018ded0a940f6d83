"""The GitHub double's webhooks: ``pull_request`` events delivered and signed as GitHub delivers them.

GitHub POSTs an event to each webhook of the repository, asynchronously, with the headers
``X-GitHub-Event``, ``X-GitHub-Delivery`` (a GUID), ``X-Hub-Signature-256`` (``sha256=`` + the
HMAC-SHA256 of the raw body under the webhook's secret) and ``User-Agent: GitHub-Hookshot/...``; the
body of a ``pull_request`` event carries ``action``, ``number``, ``pull_request``, ``repository`` and
``sender``. The double sends one for each change a user makes through it: a pull request opened,
closed or reopened (``POST /_double/pulls``, ``PATCH /repos/{owner}/{repo}/pulls/{n}``) and a push to
an open pull request's branch (``POST /_double/push``, which the sample repository's ``post-receive``
hook calls): ``synchronize``. ``GET /_double/deliveries`` lists what was sent and how it was answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import requests

#: The environment variable the double reads its webhook secret from (never a command-line argument).
WEBHOOK_SECRET_ENV = "FAYE_GITHUB_DOUBLE_WEBHOOK_SECRET"
MAX_DELIVERIES_KEPT = 200


def signature(secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256`` of ``body``: GitHub's ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    """One webhook delivery and its answer (``status`` None until answered, or when unreachable)."""

    id: str
    event: str
    action: str
    number: int
    repository_id: int = 0
    status: int | None = None
    error: str = ""
    answer: Any = None  # the webhook's JSON answer (faye's: the runs it triggered)


class WebhookSender:
    """Delivers events to one webhook URL, each in a thread of its own (GitHub does not wait either)."""

    def __init__(self, url: str, secret: str, timeout: float = 30.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()

    def send(self, event: str, payload: dict[str, Any]) -> Delivery:
        """Deliver ``payload`` as ``event`` (in the background); return the delivery, answered later."""
        delivery = Delivery(
            id=str(uuid.uuid4()),
            event=event,
            action=str(payload.get("action") or ""),
            number=int(payload.get("number") or 0),
            repository_id=int((payload.get("repository") or {}).get("id") or 0),
        )
        with self.lock:
            self.deliveries.append(delivery)
            del self.deliveries[:-MAX_DELIVERIES_KEPT]
        body = json.dumps(payload).encode()
        thread = threading.Thread(target=self._post, args=(delivery, body), daemon=True)
        thread.start()
        return delivery

    def _post(self, delivery: Delivery, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/faye-double",
            "X-GitHub-Event": delivery.event,
            "X-GitHub-Delivery": delivery.id,
            "X-GitHub-Hook-ID": "1",
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-GitHub-Hook-Installation-Target-ID": str(delivery.repository_id),
            "X-Hub-Signature-256": signature(self.secret, body),
        }
        try:
            answer = requests.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as err:
            with self.lock:
                delivery.error = f"{type(err).__name__}: {err}"
            return
        try:
            answered = answer.json()
        except ValueError:
            answered = None
        with self.lock:
            delivery.status, delivery.answer = answer.status_code, answered
            if answer.status_code >= 300:
                delivery.error = answer.text[:500]

    def listing(self) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(d) for d in self.deliveries]
