"""The ASGI app: Cloud Run Admin API v2 over REST, the front door, `/healthz`, `/_emulator/faults` and
`/_emulator/calls`.

One port serves all of it; the Host header decides (`*.run.localhost` is the front door).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from faye_plugin.emulator import frontdoor
from faye_plugin.emulator.engine import Engine
from faye_plugin.emulator.faults import Fault, FaultTable
from faye_plugin.emulator.runtime import Runtime
from faye_plugin.emulator.validation import parse_json_body
from faye_plugin.exceptions import CloudRunApiError

log = logging.getLogger(__name__)

LOC = r"/v2/(?P<parent>projects/[^/:]+/locations/[^/:]+)"
SEG = r"[^/:]+"
# (method, path regex, RPC name, allowed query parameters)
ROUTES: list[tuple[str, re.Pattern[str], str, tuple[str, ...]]] = [
    ("POST", re.compile(rf"^{LOC}/services$"), "CreateService", ("serviceId", "validateOnly")),
    ("GET", re.compile(rf"^{LOC}/services$"), "ListServices", ("pageSize", "pageToken", "showDeleted")),
    ("GET", re.compile(rf"^/v2/(?P<name>projects/{SEG}/locations/{SEG}/services/{SEG})$"), "GetService", ()),
    (
        "PATCH",
        re.compile(rf"^/v2/(?P<name>projects/{SEG}/locations/{SEG}/services/{SEG})$"),
        "UpdateService",
        ("updateMask", "validateOnly", "allowMissing"),
    ),
    (
        "DELETE",
        re.compile(rf"^/v2/(?P<name>projects/{SEG}/locations/{SEG}/services/{SEG})$"),
        "DeleteService",
        ("validateOnly", "etag"),
    ),
    (
        "GET",
        re.compile(rf"^/v2/(?P<parent>projects/{SEG}/locations/{SEG}/services/{SEG})/revisions$"),
        "ListRevisions",
        ("pageSize", "pageToken", "showDeleted"),
    ),
    (
        "GET",
        re.compile(rf"^/v2/(?P<name>projects/{SEG}/locations/{SEG}/services/{SEG}/revisions/{SEG})$"),
        "GetRevision",
        (),
    ),
    (
        "DELETE",
        re.compile(rf"^/v2/(?P<name>projects/{SEG}/locations/{SEG}/services/{SEG}/revisions/{SEG})$"),
        "DeleteRevision",
        ("validateOnly", "etag"),
    ),
    ("GET", re.compile(rf"^{LOC}/operations$"), "ListOperations", ("filter", "pageSize", "pageToken")),
    (
        "GET",
        re.compile(rf"^/v2/(?P<name>projects/{SEG}/locations/{SEG}/operations/{SEG})$"),
        "GetOperation",
        (),
    ),
    (
        "DELETE",
        re.compile(rf"^/v2/(?P<name>projects/{SEG}/locations/{SEG}/operations/{SEG})$"),
        "DeleteOperation",
        (),
    ),
    (
        "POST",
        re.compile(rf"^/v2/(?P<name>projects/{SEG}/locations/{SEG}/operations/{SEG}):wait$"),
        "WaitOperation",
        (),
    ),
]
SYSTEM_PARAMS = ("$alt", "alt", "prettyPrint", "$prettyPrint", "fields", "$fields", "key")
MAX_WAIT_SECONDS = 60.0


def error_response(err: CloudRunApiError) -> JSONResponse:
    """Render an error the way Google APIs do."""
    body: dict[str, Any] = {"code": err.http_status, "message": err.message, "status": err.status}
    if err.details:
        body["details"] = err.details
    return JSONResponse({"error": body}, status_code=err.http_status)


def query_bool(params: dict[str, str], key: str, field: str) -> bool:
    """Read a boolean query parameter ("true"/"false")."""
    value = params.get(key, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise CloudRunApiError(
            400, "INVALID_ARGUMENT", f"Invalid value at '{field}' (TYPE_BOOL), \"{value}\""
        )
    return value in ("true", "1")


def query_int(params: dict[str, str], key: str, field: str) -> int:
    """Read an integer query parameter."""
    value = params.get(key, "0")
    try:
        return int(value)
    except ValueError as err:
        raise CloudRunApiError(
            400, "INVALID_ARGUMENT", f"Invalid value at '{field}' (TYPE_INT32), \"{value}\""
        ) from err


def parse_duration(value: Any) -> float:
    """Read a protobuf Duration ("30s", "1.5s") from a WaitOperation body."""
    if value is None:
        return MAX_WAIT_SECONDS
    if not isinstance(value, str) or not re.fullmatch(r"\d+(\.\d+)?s", value):
        raise CloudRunApiError(
            400,
            "INVALID_ARGUMENT",
            f"Invalid value at 'timeout' (type.googleapis.com/google.protobuf.Duration), \"{value}\"",
        )
    return min(float(value[:-1]), MAX_WAIT_SECONDS)


def create_app(engine: Engine, faults: FaultTable, runtime: Runtime | None = None) -> Starlette:
    """Build the emulator's ASGI app around an engine (and the runtime it reconciles at start-up)."""
    state: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if runtime is not None:
            await run_in_threadpool(runtime.remove_strays, engine.keep_set())
            await run_in_threadpool(engine.start)
        state["client"] = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0), follow_redirects=False)
        try:
            yield
        finally:
            await state["client"].aclose()
            if runtime is not None:
                runtime.close()

    async def handle(request: Request) -> Response:
        target = engine.naming.parse_host(request.headers.get("host", ""))
        if target is not None:
            return await frontdoor.proxy(request, engine, state["client"], target)
        path = request.url.path
        try:
            if path == "/healthz":
                return PlainTextResponse("ok\n")
            if path == "/_emulator/faults":
                return await admin_faults(request, faults)
            if path == "/_emulator/calls":
                return JSONResponse({"calls": faults.calls(reset=request.method == "DELETE")})
            return await api(request, engine, faults)
        except CloudRunApiError as err:
            return error_response(err)
        except Exception:  # never crash on input: answer 500 and keep serving
            log.exception("unexpected error on %s %s", request.method, path)
            return error_response(CloudRunApiError(500, "INTERNAL", "Internal error encountered."))

    methods = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", handle, methods=methods)], lifespan=lifespan)


async def admin_faults(request: Request, faults: FaultTable) -> Response:
    """GET lists pending faults, POST adds one (or a list), DELETE clears them."""
    if request.method == "DELETE":
        faults.clear()
        return JSONResponse({"faults": []})
    if request.method == "POST":
        body = parse_json_body(await request.body())
        added = [Fault.from_json(item) for item in (body if isinstance(body, list) else [body])]
        for fault in added:
            faults.add(fault)
    return JSONResponse({"faults": faults.pending()})


async def api(request: Request, engine: Engine, faults: FaultTable) -> Response:
    """Dispatch one Cloud Run Admin API v2 call."""
    path = request.url.path
    found = [(m, match, rpc, allowed) for m, rx, rpc, allowed in ROUTES if (match := rx.match(path))]
    if not found:
        raise CloudRunApiError(404, "NOT_FOUND", f"The requested URL {path} was not found on this server.")
    chosen = [f for f in found if f[0] == request.method]
    if not chosen:
        raise CloudRunApiError(405, "UNIMPLEMENTED", f"Method {request.method} is not allowed on {path}.")
    _, match, rpc, allowed = chosen[0]
    params = dict(request.query_params)
    for key in params:
        if key not in allowed and key not in SYSTEM_PARAMS:
            raise CloudRunApiError(
                400,
                "INVALID_ARGUMENT",
                f'Invalid JSON payload received. Unknown name "{key}": Cannot bind '
                "query "
                f"parameter. Field '{key}' could not be found in request message.",
            )
    fault = faults.take(rpc)
    if fault is not None:
        if fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        if fault.status is not None:
            raise fault.error()
    groups = match.groupdict()
    body = parse_json_body(await request.body()) if request.method in ("POST", "PATCH") else None
    if rpc == "WaitOperation":
        timeout = parse_duration((body or {}).get("timeout") if isinstance(body, dict) else None)
        return JSONResponse(await wait_operation(engine, groups["name"], timeout))
    call = bind(rpc, engine, groups, params, body)
    return JSONResponse(await run_in_threadpool(call))


def bind(
    rpc: str, engine: Engine, groups: dict[str, str], params: dict[str, str], body: Any
) -> Callable[[], Any]:
    """Return a no-argument call of the engine method behind `rpc`."""
    name, parent = groups.get("name", ""), groups.get("parent", "")
    validate_only = query_bool(params, "validateOnly", "validate_only") if "validateOnly" in params else False
    page = (query_int(params, "pageSize", "page_size"), params.get("pageToken", ""))
    calls: dict[str, Callable[[], Any]] = {
        "CreateService": lambda: engine.create_service(
            parent, params.get("serviceId", ""), body, validate_only
        ),
        "ListServices": lambda: engine.list_services(parent, *page),
        "GetService": lambda: engine.get_service(name),
        "UpdateService": lambda: engine.update_service(
            name,
            body,
            params.get("updateMask"),
            query_bool(params, "allowMissing", "allow_missing"),
            validate_only,
        ),
        "DeleteService": lambda: engine.delete_service(name, params.get("etag", ""), validate_only),
        "ListRevisions": lambda: engine.list_revisions(parent, *page),
        "GetRevision": lambda: engine.get_revision(name),
        "DeleteRevision": lambda: engine.delete_revision(name, params.get("etag", ""), validate_only),
        "ListOperations": lambda: engine.list_operations(parent, *page),
        "GetOperation": lambda: engine.get_operation(name),
        "DeleteOperation": lambda: engine.delete_operation(name),
    }
    return calls[rpc]


async def wait_operation(engine: Engine, name: str, timeout: float) -> dict[str, Any]:
    """WaitOperation: answer when the operation is done or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        op = await run_in_threadpool(engine.get_operation, name)
        if op["done"] or time.monotonic() >= deadline:
            return op
        await asyncio.sleep(0.1)
