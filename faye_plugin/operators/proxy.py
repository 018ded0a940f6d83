"""Operators on the preview proxy: give a slot up, and route a slot to a preview.

The proxy's routes are the public record of who holds each slot (``X-Faye-*`` fields of the route);
Cloud Run's preview state
(:mod:`faye_plugin.preview_state`) is the other half. Both are read back, never cached.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from faye_plugin.catalogue import load_catalogue
from faye_plugin.exceptions import CatalogueError, FayeError, SlotBusyError
from faye_plugin.hooks.proxy import ProxyHook, SlotRoute
from faye_plugin.links import PreviewLink

if TYPE_CHECKING:
    from airflow.sdk import Context


class ReleaseSlotOperator(BaseOperator):
    """Make ``slot`` free for PR ``pr``: remove whatever other preview holds it (route, then tag).

    Holders are read from the proxy's route for the slot and from the service's preview state (a
    preview whose record holds the slot without a route). Each is removed entirely, route first and
    then its Cloud Run tag and record, so no hostname routes to a tag that is gone; when this PR's
    claim is taking the slot over, the same write hands the slot to it
    (:meth:`faye_plugin.preview_state.PreviewState.release`). A route this PR holds on another slot is
    removed too (the PR moves). Returns ``{"slot", "released": [...], "moved_from": [...]}``.

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
        from faye_plugin import preview_state
        from faye_plugin.hooks.cloud_run import CloudRunPreviewHook
        from faye_plugin.removal import remove_preview

        catalogue = load_catalogue()
        spec = catalogue.service(str(self.service))
        pr, slot = int(self.pr), spec.require_slot(str(self.slot))
        proxy = ProxyHook(proxy_conn_id=spec.proxy_conn_id)
        cloud_run = CloudRunPreviewHook(gcp_conn_id=spec.cloud_run.gcp_conn_id)
        target = spec.cloud_run

        state = preview_state.read(
            cloud_run, project=target.project, region=target.region, service=target.service
        )
        me = state.get(pr)
        taking = me is not None and me.taking == slot
        holder = state.holder(slot, besides=pr)
        live = preview_state.Liveness(now_ms=preview_state.ms(time.time())).live
        # No claim hands this slot over (a DAG without the safe point): only a holder whose deploy is
        # not live may go, never one in flight or pinned.
        if holder is not None and not taking and (holder.pinned or live(holder)):
            raise SlotBusyError(
                f"slot {slot} is held by PR {holder.pr} (sha {holder.sha[:7] or '?'}"
                f"{', pinned' if holder.pinned else ', deploying'}): PR {pr} cannot take it"
            )

        routes = proxy.list_slot_routes()
        moved_from = [r.slot for r in routes if r.service == spec.name and int(r.pr) == pr and r.slot != slot]
        for other in moved_from:
            proxy.delete_slot_route(other)

        evict: list[tuple[str, int]] = []
        route = next((r for r in routes if r.slot == slot), None)
        if route is not None and (route.service, int(route.pr)) != (spec.name, pr):
            evict.append((route.service, int(route.pr)))
        if holder is not None and (spec.name, holder.pr) not in evict:
            evict.append((spec.name, holder.pr))

        def hand_over(after: preview_state.PreviewState) -> preview_state.PreviewState:
            return after.release(pr)[0] if taking else after

        released = []
        handed = False
        for service_name, holder_pr in evict:
            try:
                holder_spec = catalogue.service(service_name)
            except CatalogueError:
                # A route of a service the catalogue no longer knows: only the route can go.
                proxy.delete_slot_route(slot)
                released.append({"service": service_name, "pr": holder_pr, "routes_removed": [slot]})
                continue
            self.log.info("Slot %s is held by %s PR %d: releasing it", slot, service_name, holder_pr)
            same = holder_spec.name == spec.name
            removal = remove_preview(
                holder_spec,
                holder_pr,
                cloud_run=cloud_run
                if holder_spec.cloud_run.gcp_conn_id == target.gcp_conn_id
                else CloudRunPreviewHook(gcp_conn_id=holder_spec.cloud_run.gcp_conn_id),
                proxy=proxy,
                # Without a take-over (no safe point), a holder whose deploy came back to life is kept.
                only_if=None if taking or not same else functools.partial(_gone, pr=holder_pr),
                also=hand_over if same and not handed else None,
            )
            handed = handed or same
            released.append(removal.as_dict())
        if taking and not handed:
            preview_state.apply(
                cloud_run,
                project=target.project,
                region=target.region,
                service=target.service,
                transition=lambda st, current: preview_state.Planned(hand_over(st)),
            )
        if not released:
            self.log.info("Slot %s was free for %s PR %d", slot, spec.name, pr)
        return {"slot": slot, "released": released, "moved_from": moved_from}


def _gone(state: Any, *, pr: int) -> bool:
    """True when an evicted holder is still evictable on a fresh read: gone, or neither pinned nor live."""
    from faye_plugin import preview_state

    holder = state.get(pr)
    live = preview_state.Liveness(now_ms=preview_state.ms(time.time())).live
    return holder is None or not (holder.pinned or live(holder))


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
    operator_extra_links = (PreviewLink(),)

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
