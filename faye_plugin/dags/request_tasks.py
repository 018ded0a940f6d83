"""Tasks shared by the request DAGs ``faye_build`` and ``faye_test``: check the conf, find the preview."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from airflow.sdk import task

from faye_plugin.catalogue import load_catalogue
from faye_plugin.exceptions import InvalidRequestError
from faye_plugin.params import PreviewRequest, validate_request


def _request(context: dict[str, Any]) -> PreviewRequest:
    dag_run = context["dag_run"]
    return validate_request(dict(getattr(dag_run, "conf", None) or {}))


@task(task_id="validate")
def validate(**context: Any) -> dict[str, Any]:
    """Check the run's conf (every bad or unknown field at once) and that the catalogue knows the service."""
    request = _request(context)
    load_catalogue().service(request.service)
    return asdict(request)


def preview_url_for(request: PreviewRequest) -> str:
    """Return the public URL of the preview of ``request``: its ``slot``, else the slot whose proxy route
    the PR's preview holds."""
    from faye_plugin.hooks.proxy import ProxyHook

    spec = load_catalogue().service(request.service)
    proxy = ProxyHook(spec.proxy_conn_id)
    if request.slot:
        return proxy.slot_url(spec.require_slot(request.slot))
    for route in proxy.list_slot_routes():
        if route.service == request.service and route.pr == request.pr:
            return proxy.slot_url(route.slot)
    raise InvalidRequestError(
        f"no slot of {request.service} is routed to PR {request.pr}: deploy it first, or pass 'slot'"
    )


@task(task_id="resolve_preview")
def resolve_preview(**context: Any) -> str:
    """Return the URL the PR's preview answers at through the proxy."""
    url = preview_url_for(_request(context))
    print(f"preview URL: {url}")
    return url
