"""Operators on the preview proxy: give a slot up, and route a slot to a preview.

The proxy's routes are the public record of who holds each slot (``X-Faye-*`` fields of the route);
Cloud Run's ``faye.dev/previews`` annotation is the other half. Both are read back, never cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from faye_plugin.catalogue import load_catalogue
from faye_plugin.exceptions import CatalogueError, FayeError
from faye_plugin.hooks.proxy import ProxyHook, SlotRoute

if TYPE_CHECKING:
    from airflow.sdk import Context


class ReleaseSlotOperator(BaseOperator):
    """Make ``slot`` free for PR ``pr``: remove whatever other preview holds it (route, then tag).

    Holders are read from the proxy's route for the slot and from the service's annotation (a preview
    whose record claims the slot without a route). Each is removed entirely, route first and then its
    Cloud Run tag and record, so no hostname routes to a tag that is gone. A route this PR holds on
    another slot is removed too (the PR moves). Returns ``{"slot", "released": [...], "moved_from": [...]}``.

    :param service: the catalogue's service name (templated).
    :param pr: the pull request number taking the slot (templated).
    :param slot: the slot (templated).
    """

    template_fields: Sequence[str] = ("service", "pr", "slot")
    ui_color = "#ffe9d6"

    def __init__(self, *, service: str, pr: int | str, slot: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr
        self.slot = slot

    def execute(self, context: Context) -> dict[str, Any]:
        from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, read_previews
        from faye_plugin.operators.removal import remove_preview

        catalogue = load_catalogue()
        spec = catalogue.service(str(self.service))
        pr, slot = int(self.pr), spec.require_slot(str(self.slot))
        proxy = ProxyHook(proxy_conn_id=spec.proxy_conn_id)
        cloud_run = CloudRunPreviewHook(gcp_conn_id=spec.cloud_run.gcp_conn_id)
        target = spec.cloud_run

        routes = proxy.list_slot_routes()
        moved_from = [r.slot for r in routes if r.service == spec.name and int(r.pr) == pr and r.slot != slot]
        for other in moved_from:
            proxy.delete_slot_route(other)

        holders: list[tuple[str, int]] = []
        route = next((r for r in routes if r.slot == slot), None)
        if route is not None and (route.service, int(route.pr)) != (spec.name, pr):
            holders.append((route.service, int(route.pr)))
        current = cloud_run.get_service(project=target.project, region=target.region, service=target.service)
        if current is not None:
            for record in read_previews(current).values():
                if record.slot == slot and record.pr != pr and (spec.name, record.pr) not in holders:
                    holders.append((spec.name, record.pr))

        released = []
        for service_name, holder_pr in holders:
            try:
                holder_spec = catalogue.service(service_name)
            except CatalogueError:
                # A route of a service the catalogue no longer knows: only the route can go.
                proxy.delete_slot_route(slot)
                released.append({"service": service_name, "pr": holder_pr, "routes_removed": [slot]})
                continue
            self.log.info("Slot %s is held by %s PR %d: releasing it", slot, service_name, holder_pr)
            removal = remove_preview(
                holder_spec,
                holder_pr,
                cloud_run=cloud_run
                if holder_spec.cloud_run.gcp_conn_id == target.gcp_conn_id
                else CloudRunPreviewHook(gcp_conn_id=holder_spec.cloud_run.gcp_conn_id),
                proxy=proxy,
            )
            released.append(removal.as_dict())
        if not released:
            self.log.info("Slot %s was free for %s PR %d", slot, spec.name, pr)
        return {"slot": slot, "released": released, "moved_from": moved_from}


class UpdateProxyOperator(BaseOperator):
    """Route the slot's hostname to the preview's tag URL (idempotent upsert of the slot's route).

    Runs after ``deploy_revision``: the tag URL exists only once the deploy created the tag, and it is
    stable across the PR's revisions, so the route never points at something Cloud Run does not serve.
    Returns ``{"slot", "slot_url", "hostname", "upstream", "revision", "sha"}``.

    :param service: the catalogue's service name (templated).
    :param preview: what ``deploy_revision`` returned (templated: pass its XComArg).
    """

    template_fields: Sequence[str] = ("service", "preview")
    ui_color = "#e0ffe0"

    def __init__(self, *, service: str, preview: dict[str, Any] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.preview = preview

    def execute(self, context: Context) -> dict[str, Any]:
        spec = load_catalogue().service(str(self.service))
        preview = self.preview
        if not isinstance(preview, dict) or not preview.get("url") or not preview.get("slot"):
            raise FayeError(f"update_proxy needs the deployed preview (url, slot), got {preview!r}")
        slot = spec.require_slot(str(preview["slot"]))
        proxy = ProxyHook(proxy_conn_id=spec.proxy_conn_id)
        route = SlotRoute(
            slot=slot,
            hostname=proxy.slot_hostname(slot),
            upstream_url=str(preview["url"]),
            service=spec.name,
            pr=int(preview["pr"]),
            sha=str(preview["sha"]),
            revision=str(preview["revision"]),
            tag=str(preview["tag"]),
        )
        proxy.upsert_slot_route(route)
        slot_url = proxy.slot_url(slot)
        self.log.info(
            "Slot %s (%s) now routes to %s (%s)", slot, slot_url, route.upstream_url, route.revision
        )
        return {
            "slot": slot,
            "slot_url": slot_url,
            "hostname": route.hostname,
            "upstream": route.upstream_url,
            "revision": route.revision,
            "sha": route.sha,
        }
