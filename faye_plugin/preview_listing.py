"""What ``faye previews`` and the previews page show, and the pin both of them set.

Everything comes from the peers themselves: each service's preview state and tags on Cloud Run
(:mod:`faye_plugin.preview_state`), and the proxy's slot routes. Pinning sets the pin in the
preview's record, which ``faye_cleanup`` honours (the preview is kept past its expiry). The hooks
read Airflow connections from the environment (``AIRFLOW_CONN_*``).
"""

from __future__ import annotations

import time
from typing import Any

from faye_plugin.exceptions import InvalidRequestError


def list_previews(service_names: list[str] | None = None) -> list[dict[str, Any]]:
    """Return one row per preview: service, pr, tag, slot, sha, revision, expires, pinned, url, slot_url."""
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, tag_uri
    from faye_plugin.hooks.proxy import ProxyHook
    from faye_plugin.preview_state import PreviewState

    catalogue = load_catalogue()
    rows = []
    for name in service_names or sorted(catalogue.services):
        spec = catalogue.service(name)
        target = spec.cloud_run
        service = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id).get_service(
            project=target.project, region=target.region, service=target.service
        )
        if service is None:
            continue
        proxy = ProxyHook(proxy_conn_id=spec.proxy_conn_id)
        routes = {(r.service, int(r.pr)): r for r in proxy.list_slot_routes()}
        for record in PreviewState.read(service):
            tag = record.tag
            route = routes.get((spec.name, record.pr))
            rows.append(
                {
                    "service": spec.name,
                    "pr": record.pr,
                    "tag": tag,
                    "slot": record.slot,
                    "sha": record.sha,
                    "revision": record.revision,
                    "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.expires)),
                    "pinned": record.pinned,
                    "url": tag_uri(service, tag),
                    "slot_url": proxy.slot_url(route.slot) if route else None,
                }
            )
    return rows


def set_pinned(service_name: str, pr: int, pinned: bool) -> dict[str, Any]:
    """Set the preview's pin in its record; raise InvalidRequestError if there is no such preview."""
    from faye_plugin import preview_state
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, preview_tag

    spec = load_catalogue().service(service_name)
    target = spec.cloud_run
    tag = preview_tag(pr)

    def pin(state: preview_state.PreviewState, current: Any) -> preview_state.Planned | None:
        if state.get(pr) is None:
            return None
        return preview_state.Planned(state.pin(pr, pinned))

    _, state = preview_state.apply(
        CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id),
        project=target.project,
        region=target.region,
        service=target.service,
        transition=pin,
    )
    record = state.get(pr)
    if record is None:
        raise InvalidRequestError(f"{service_name} has no preview for PR {pr} (tag {tag})")
    return {"service": service_name, "pr": pr, "tag": tag, "pinned": record.pinned, "expires": record.expires}


def expire_now(service_name: str, pr: int, now: float | None = None) -> dict[str, Any]:
    """Bring the preview's expiry forward to now and unpin it (the next ``faye_cleanup`` removes it).

    A :meth:`~faye_plugin.preview_state.PreviewState.expire` transition, distinct from extend (which
    never shortens an expiry). Raises InvalidRequestError if there is no such preview.
    """
    from faye_plugin import preview_state
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, preview_tag

    spec = load_catalogue().service(service_name)
    target = spec.cloud_run
    tag = preview_tag(pr)
    at = time.time() if now is None else now

    def expire(state: preview_state.PreviewState, current: Any) -> preview_state.Planned | None:
        if state.get(pr) is None:
            return None
        return preview_state.Planned(state.expire(pr, at))

    _, state = preview_state.apply(
        CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id),
        project=target.project,
        region=target.region,
        service=target.service,
        transition=expire,
    )
    record = state.get(pr)
    if record is None:
        raise InvalidRequestError(f"{service_name} has no preview for PR {pr} (tag {tag})")
    return {
        "service": service_name,
        "pr": pr,
        "tag": tag,
        "pinned": record.pinned,
        "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.expires)),
    }
