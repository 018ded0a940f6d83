"""The front door: requests for `[TAG---]SERVICE[.REGION.PROJECT].run.localhost` reach a revision's container.

A service host follows the service's traffic split (a weighted pick by percent); a tag host goes to that
tag's revision. Only what `trafficStatuses` says is served, so a revision that never became ready
receives nothing.
"""

from __future__ import annotations

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from faye_plugin.emulator.engine import Engine

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


async def proxy(
    request: Request, engine: Engine, client: httpx.AsyncClient, target: tuple[str, str, str, str]
) -> Response:
    """Forward one request to the container serving `target` (project, location, service, tag)."""
    port, detail = await run_in_threadpool(engine.route, *target)
    if port is None:
        status = 404 if detail.startswith("no ") else 503
        return PlainTextResponse(
            f"Error: {detail}.\n"
            if status == 404
            else f"Service Unavailable: revision '{detail}' is not running.\n",
            status_code=status,
        )
    url = f"http://127.0.0.1:{port}{request.url.path}"
    if request.url.query:
        url += "?" + request.url.query
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    try:
        answer = await client.request(request.method, url, headers=headers, content=await request.body())
    except httpx.ConnectError as err:  # the container died: replace it, like Cloud Run replaces instances
        name = f"projects/{target[0]}/locations/{target[1]}/services/{target[2]}"
        await run_in_threadpool(engine.revision_died, name, detail)
        return PlainTextResponse(
            f"Bad Gateway: revision '{detail}' did not answer ({err}); it is being restarted.\n",
            status_code=502,
        )
    except httpx.HTTPError as err:
        return PlainTextResponse(f"Bad Gateway: revision '{detail}' did not answer: {err}\n", status_code=502)
    response = Response(content=answer.content, status_code=answer.status_code)
    # httpx already decoded the body, so its content-encoding no longer applies; repeated headers
    # (Set-Cookie) stay repeated.
    response.raw_headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in answer.headers.multi_items()
        if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"
    ] + [(b"content-length", str(len(answer.content)).encode())]
    return response
