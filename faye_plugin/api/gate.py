"""The trigger gate: a bad trigger of a faye DAG is refused with HTTP 400 naming every problem, no run.

An ASGI root middleware that faye's plugin registers in Airflow's api-server
(``AirflowPlugin.fastapi_root_middlewares``). It looks only at ``POST /api/v2/dags/{dag_id}/dagRuns``
of faye's DAGs (``faye_plugin.params.FAYE_DAGS``): the route the REST API, faye's CLI and the
Airflow UI's trigger form all use. For those it reads the JSON body and

* refuses, with **400** ``{"detail": "<every problem in one line>", "problems": [{"field", "message"}]}``,
  a body that is not a JSON object, a ``conf`` that is not one, and every problem of the conf at
  once (``faye_plugin.params.conf_problems``: types, patterns, bounds, unknown keys, missing fields,
  a service or slot the catalogue does not declare); **413** for a body over ``MAX_BODY_BYTES``;
  **503** when the catalogue cannot be read (the server's fault, not the caller's);
* fills a null or missing ``logical_date`` with the trigger time, so the test-server pool (served by
  priority, then logical date) is first come, first served whatever the caller sends;
* fills a null or missing ``dag_run_id`` with faye's readable run id
  (``faye_plugin.run_identity``: ``hello-pr-777-74b5f9f-<UTC time>``), so the runs list says which
  service and PR each run is for however it was triggered (the UI's trigger form included).

It judges only callers Airflow would let trigger the DAG (the route's own ``get_user`` and
``requires_access_dag``): anyone else passes through untouched to Airflow's 401/403, so the gate
never tells a stranger the catalogue's names. Everything it lets through reaches Airflow's route as
it was (or with the filled ``logical_date`` and ``dag_run_id``), where the Params check the same
schema once more.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faye_plugin.exceptions import CatalogueError
from faye_plugin.params import FAYE_DAGS, Problem, conf_problems
from faye_plugin.run_identity import run_id_for_conf

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TRIGGER_PATH = re.compile(r"/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns/?")
#: A trigger body is a few hundred bytes; anything past this is refused unread (HTTP 413).
MAX_BODY_BYTES = 256 * 1024


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (parsers disagree on which one wins)."""


@dataclass(frozen=True)
class Verdict:
    """What the gate does with one trigger: answer ``status`` with ``answer``, or pass ``body`` on."""

    status: int = 200
    answer: dict[str, Any] | None = None
    body: bytes = b""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _refusal(dag_id: str, problems: list[Problem]) -> Verdict:
    detail = f"{dag_id} refuses this trigger ({len(problems)} problem{'s' if len(problems) > 1 else ''}): "
    detail += "; ".join(str(p) for p in problems)
    listed = [{"field": p.field, "message": p.message} for p in problems]
    return Verdict(400, {"detail": detail, "problems": listed})


def judge(dag_id: str, body: bytes, now: datetime | None = None) -> Verdict:
    """Judge one trigger body of faye DAG ``dag_id`` (pure but for reading the catalogue)."""
    from faye_plugin.catalogue import load_catalogue

    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_object)
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError and DuplicateKeyError are ValueErrors
        reason = err.args[0] if isinstance(err, DuplicateKeyError) else f"not valid JSON ({err})"
        return _refusal(dag_id, [Problem("body", str(reason)[:200])])
    if not isinstance(data, dict):
        return _refusal(dag_id, [Problem("body", "must be a JSON object with a 'conf' object")])
    try:
        catalogue = load_catalogue()
    except CatalogueError as err:
        detail = f"faye cannot check this trigger: {err}"
        return Verdict(503, {"detail": detail, "problems": [{"field": "catalogue", "message": str(err)}]})
    problems = conf_problems(dag_id, data.get("conf"), catalogue)
    if problems:
        return _refusal(dag_id, problems)
    at = now or datetime.now(UTC)
    filled = False
    if data.get("logical_date") is None:
        data["logical_date"], filled = at.isoformat(), True
    if data.get("dag_run_id") is None and (run_id := run_id_for_conf(dag_id, data.get("conf"), at)):
        data["dag_run_id"], filled = run_id, True
    return Verdict(body=json.dumps(data).encode()) if filled else Verdict(body=body)


class TriggerGate:
    """ASGI middleware: judge triggers of faye's DAGs before Airflow's route creates a run."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        dag_id = self._gated_dag(scope)
        if dag_id is None:
            await self.app(scope, receive, send)
            return
        body, complete = await _read_body(receive, self.max_body_bytes)
        if body is None:
            return  # the client went away
        if not await _may_trigger(scope, dag_id):
            await self.app(scope, _replay(body, receive, complete), send)
            return
        if not complete:
            answer = {"detail": f"a trigger body is at most {self.max_body_bytes} bytes"}
            await _answer(scope, receive, send, Verdict(413, answer))
            return
        try:
            verdict = judge(dag_id, body)
        except Exception:  # a bug of the gate must not turn into a 500: Airflow's Params still check
            log.exception("faye's trigger gate failed on a trigger of %s; passing it to Airflow", dag_id)
            verdict = Verdict(body=body)
        if verdict.answer is not None:
            log.info("refused a trigger of %s: %s", dag_id, verdict.answer["detail"][:500])
            await _answer(scope, receive, send, verdict)
            return
        if verdict.body is not body:
            scope = {**scope, "headers": _with_length(scope["headers"], len(verdict.body))}
        await self.app(scope, _replay(verdict.body, receive, True), send)

    @staticmethod
    def _gated_dag(scope: Scope) -> str | None:
        if scope.get("type") != "http" or scope.get("method") != "POST":
            return None
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", ""))
        if root and path.startswith(root):
            path = path[len(root) :]
        match = TRIGGER_PATH.fullmatch(path)
        if match is None or match["dag_id"] not in FAYE_DAGS:
            return None
        return match["dag_id"]


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, bool]:
    """Read the body: ``(None, False)`` if the client went away; ``complete`` is False past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive, complete: bool) -> Receive:
    """A ``receive`` that hands out ``body`` first (then the rest, if it was not read to the end)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay


def _with_length(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    return [*kept, (b"content-length", str(length).encode())]


async def _answer(scope: Scope, receive: Receive, send: Send, verdict: Verdict) -> None:
    from starlette.responses import JSONResponse

    await JSONResponse(verdict.answer, status_code=verdict.status)(scope, receive, send)


async def _may_trigger(scope: Scope, dag_id: str) -> bool:
    """Whether Airflow would let this caller trigger ``dag_id`` (the route's own auth checks)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_dag
    from fastapi import HTTPException
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request

    request = Request(scope)
    try:
        user = await get_user(request, None, await bearer_scheme(request))
        check = requires_access_dag(method="POST", access_entity=DagAccessEntity.RUN, param_dag_id=dag_id)
        await run_in_threadpool(check, request, user)  # it may read the DAG's team from the database
    except HTTPException:
        return False
    return True
