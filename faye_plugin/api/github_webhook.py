"""GitHub webhooks into faye: ``POST /faye/github/webhook`` (a FastAPI app the plugin mounts).

GitHub cannot log in to Airflow, so this route is not behind Airflow's auth: it trusts a request only
when ``X-Hub-Signature-256`` is the HMAC-SHA256 of the raw body under the webhook secret, the password
of the Airflow connection ``faye_github_webhook``, read at each request (a rotated secret needs no
restart) and compared in constant time. A missing or wrong signature is answered 401 and triggers
nothing; no secret configured is 503.

``pull_request`` events of a repository the catalogue names (a service's ``github.repo``):
``opened``, ``synchronize``, ``reopened`` trigger ``faye_deploy`` of the head commit, ``closed`` triggers
``faye_teardown``, for every service that reports to that repository; the conf is checked as the
trigger gate checks it (:func:`faye_plugin.params.conf_problems`). Other events and actions, and
repositories no service names, are answered 202 and ignored. GitHub's redelivery of the same delivery
(``X-GitHub-Delivery``) finds the run id it made the first time and makes no second run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from faye_plugin.catalogue import Catalogue

log = logging.getLogger(__name__)

PREFIX = "/faye/github"
WEBHOOK_PATH = "/webhook"
SECRET_CONN_ID = "faye_github_webhook"
MAX_BODY = 5 * 1024 * 1024  # GitHub caps payloads at 25 MB; a pull_request event is a few tens of KB
DEPLOY_ACTIONS = ("opened", "synchronize", "reopened")
CLOSE_ACTIONS = ("closed",)
DELIVERY_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Trigger:
    """One run a webhook asks for."""

    dag_id: str
    service: str
    conf: dict[str, Any]
    run_id: str


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is ``sha256=<hex HMAC-SHA256 of body under secret>`` (constant-time compare)."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def plan(
    event: str, payload: Any, catalogue: Catalogue, delivery: str | None, now: datetime
) -> tuple[list[Trigger], str]:
    """The runs a webhook asks for, and a word on what was decided (pure: no Airflow, no I/O)."""
    from faye_plugin.run_identity import action_run_id, is_valid_run_id, run_id_for

    if event != "pull_request":
        return [], f"event {event or 'none'} is not handled (only pull_request)"
    if not isinstance(payload, dict):
        return [], "the payload is not a JSON object"
    action = str(payload.get("action") or "")
    if action not in DEPLOY_ACTIONS + CLOSE_ACTIONS:
        return [], f"pull_request action {action or 'none'} is not handled"
    repo = str((payload.get("repository") or {}).get("full_name") or "")
    pull = payload.get("pull_request") or {}
    pr = payload.get("number", pull.get("number"))
    sha = str((pull.get("head") or {}).get("sha") or "")
    services = sorted(
        name
        for name, spec in catalogue.services.items()
        if spec.github and spec.github.repo.lower() == repo.lower()
    )
    if not services:
        return [], f"no service of the catalogue reports to {repo or 'an unnamed repository'}"
    if not isinstance(pr, int) or isinstance(pr, bool) or pr < 1:
        return [], "the event names no pull request number"
    suffix = f"gh-{delivery}" if delivery and DELIVERY_RE.match(delivery) else None
    out = []
    for service in services:
        if action in CLOSE_ACTIONS:
            run_id = (
                f"{service}-pr-{pr}-teardown-{suffix}"
                if suffix
                else action_run_id("teardown", service, pr, now)
            )
            out.append(Trigger("faye_teardown", service, {"service": service, "pr": pr}, run_id))
            continue
        if not SHA_RE.match(sha):
            return [], "the event names no head commit"
        run_id = f"{service}-pr-{pr}-{sha[:7]}-{suffix}" if suffix else run_id_for(service, pr, sha, now)
        if not is_valid_run_id(run_id):
            run_id = run_id_for(service, pr, sha, now)
        out.append(Trigger("faye_deploy", service, {"service": service, "pr": pr, "git_sha": sha}, run_id))
    verb = "tear down" if action in CLOSE_ACTIONS else "deploy"
    return out, f"pull_request {action} of {repo} #{pr}: {verb} {', '.join(services)}"


def _secret() -> str | None:
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        return Connection.get_connection_from_secrets(SECRET_CONN_ID).password or None
    except AirflowNotFoundException:
        return None


def _trigger(session: Any, trigger: Trigger, now: datetime) -> bool:
    """Create the run; False when a run of that id exists already (a redelivery)."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    try:
        trigger_dag(
            trigger.dag_id,
            triggered_by=DagRunTriggeredByType.REST_API,
            triggering_user_name="github-webhook",
            run_id=trigger.run_id,
            conf=trigger.conf,
            logical_date=now,
            run_after=now,
            replace_microseconds=False,
            session=session,
        )
    except DagRunAlreadyExists:
        return False
    return True


def create_app() -> FastAPI:
    """The app faye's plugin mounts at ``/faye/github`` (before the previews page's ``/faye``)."""
    app = FastAPI(title="faye GitHub webhooks")

    @app.post(WEBHOOK_PATH)
    async def webhook(request: Request, session: SessionDep) -> JSONResponse:
        from faye_plugin.catalogue import load_catalogue
        from faye_plugin.exceptions import FayeError
        from faye_plugin.params import conf_problems

        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"detail": "payload too large"}, status_code=413)
        secret = _secret()
        if secret is None:
            return JSONResponse(
                {"detail": f"no webhook secret: set connection {SECRET_CONN_ID}"}, status_code=503
            )
        if not signature_ok(secret, body, request.headers.get("X-Hub-Signature-256")):
            log.warning("GitHub webhook refused: missing or bad X-Hub-Signature-256")
            return JSONResponse({"detail": "missing or bad X-Hub-Signature-256"}, status_code=401)
        event = request.headers.get("X-GitHub-Event", "")
        if event == "ping":
            return JSONResponse({"detail": "pong"})
        try:
            payload = json.loads(body)
        except ValueError:
            return JSONResponse(
                {"detail": "the body is not JSON (set the webhook's content type to application/json)"},
                status_code=400,
            )
        try:
            catalogue = load_catalogue()
        except FayeError as exc:
            return JSONResponse({"detail": f"cannot read the catalogue: {exc}"}, status_code=503)
        now = datetime.now(UTC)
        triggers, why = plan(event, payload, catalogue, request.headers.get("X-GitHub-Delivery"), now)
        problems = [p for t in triggers for p in conf_problems(t.dag_id, t.conf, catalogue)]
        if problems:
            return JSONResponse({"detail": "; ".join(str(p) for p in problems)}, status_code=400)
        runs = []
        for i, trigger in enumerate(triggers):
            # one logical date per run: Airflow keeps (dag_id, logical_date) unique, and two services
            # reporting to the repository get a run each from one event
            made = _trigger(session, trigger, now + timedelta(microseconds=i))
            runs.append({"dag_id": trigger.dag_id, "run_id": trigger.run_id, "new": made})
        log.info("GitHub webhook %s: %s -> %s", request.headers.get("X-GitHub-Delivery"), why, runs)
        return JSONResponse({"detail": why, "runs": runs}, status_code=202)

    return app


def app_spec() -> dict[str, Any]:
    """The plugin's ``fastapi_apps`` entry."""
    return {"app": create_app(), "url_prefix": PREFIX, "name": "faye GitHub webhooks"}
