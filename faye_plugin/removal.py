"""Remove one preview everywhere, in the one safe order: its proxy route first, then its Cloud Run tag.

Shared by ``release_slot`` (evicting the preview that held a slot), ``faye_cleanup`` (expired
previews, and previews whose tag Cloud Run deleted on its own) and ``faye unpin``/``faye previews``
tooling. The route goes first so no hostname ever routes
to a tag that no longer exists; the tag and its record in the ``faye.dev/previews`` annotation go in
one read-modify-write of the service (a :mod:`faye_plugin.preview_state` transition: etag-checked,
retried on a lost race).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.cloud import run_v2

from faye_plugin import preview_state
from faye_plugin.catalogue import ServiceSpec
from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, preview_tag, tags, without_tag, without_tags
from faye_plugin.hooks.proxy import ProxyHook
from faye_plugin.preview_state import Liveness, Planned, PreviewState, ms

log = logging.getLogger(__name__)

# Decides, on the freshly read state, whether the removal still applies (e.g. "still expired").
StillWanted = Callable[[PreviewState], bool]
# A transition applied in the same write as the removal (release_slot hands the slot over in it).
Also = Callable[[PreviewState], PreviewState]


@dataclass
class Removal:
    """What removing one preview did."""

    service: str
    pr: int
    tag: str
    routes_removed: list[str] = field(default_factory=list)
    tag_removed: bool = False
    record_removed: bool = False
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "pr": self.pr,
            "tag": self.tag,
            "routes_removed": self.routes_removed,
            "tag_removed": self.tag_removed,
            "record_removed": self.record_removed,
            "skipped": self.skipped,
        }


def remove_preview(
    spec: ServiceSpec,
    pr: int,
    *,
    cloud_run: CloudRunPreviewHook,
    proxy: ProxyHook,
    only_if: StillWanted | None = None,
    also: Also | None = None,
) -> Removal:
    """Remove the preview of ``pr`` on ``spec``: its slot routes, its tag, its record.

    ``only_if`` is checked on a fresh read before anything changes and again inside the service
    write; when it says no, nothing more is removed (``skipped`` says why). ``also`` is a further
    transition made in the same write (the state after the removal in, the state to write out).
    Removing a preview that is already gone changes nothing and reports nothing removed.
    """
    target = spec.cloud_run
    tag = preview_tag(pr)
    result = Removal(service=spec.name, pr=pr, tag=tag)
    current = cloud_run.get_service(project=target.project, region=target.region, service=target.service)
    if current is not None and only_if is not None and not only_if(PreviewState.read(current)):
        result.skipped = "no longer wanted (re-read before removal)"
        return result
    for route in proxy.list_slot_routes():
        if route.service == spec.name and int(route.pr) == pr and proxy.delete_slot_route(route.slot):
            result.routes_removed.append(route.slot)
    if current is None:
        return result

    def teardown(state: PreviewState, service: run_v2.Service | None) -> Planned | None:
        if service is None:
            return None
        if only_if is not None and not only_if(state):
            result.skipped = "no longer wanted (changed during removal)"
            return None
        has_tag = tag in tags(service)
        has_record = state.get(pr) is not None
        if not has_tag and not has_record and also is None:
            return None
        result.tag_removed = has_tag
        result.record_removed = has_record
        after = state.remove(pr)
        return Planned(
            also(after) if also is not None else after,
            without_tag(service, tag) if has_tag else None,
            update_mask=("traffic",) if has_tag else ("annotations",),
        )

    preview_state.apply(
        cloud_run, project=target.project, region=target.region, service=target.service, transition=teardown
    )
    log.info("Removed preview %s of %s: %s", tag, spec.name, result.as_dict())
    return result


def remove_expired_previews(
    spec: ServiceSpec,
    prs: list[int],
    *,
    cloud_run: CloudRunPreviewHook,
    proxy: ProxyHook,
    now: float | None = None,
) -> list[Removal]:
    """Remove every preview of ``prs`` on ``spec`` that is (still) expired and not pinned, together.

    The order of :func:`remove_preview`, for all of them at once: one read of the service, their slot
    routes (one listing of the proxy's routes), then one write of the service that drops all their
    tags and records (a transition that checks each expiry again on the state it writes over). So
    cleaning up N previews of a service costs one Cloud Run write, not N writes racing each other.
    """
    target = spec.cloud_run
    at = time.time() if now is None else now
    results = {pr: Removal(service=spec.name, pr=pr, tag=preview_tag(pr)) for pr in prs}
    current = cloud_run.get_service(project=target.project, region=target.region, service=target.service)
    if current is None:
        return list(results.values())
    first = PreviewState.read(current)
    wanted = set()
    lifetime = spec.max_lifetime_hours
    for pr, result in results.items():
        if still_expired(pr, at, lifetime)(first):
            wanted.add(pr)
        else:
            result.skipped = "no longer wanted (re-read before removal)"
    for route in proxy.list_slot_routes():
        pr = int(route.pr)
        if route.service == spec.name and pr in wanted and proxy.delete_slot_route(route.slot):
            results[pr].routes_removed.append(route.slot)

    def teardown(state: PreviewState, service: run_v2.Service | None) -> Planned | None:
        if service is None:
            return None
        served = tags(service)
        after, gone = state, set()
        for pr in sorted(wanted):
            result = results[pr]
            if not still_expired(pr, at, lifetime)(state):
                result.skipped = "no longer wanted (changed during removal)"
                result.tag_removed = result.record_removed = False
                continue
            result.skipped = ""
            result.record_removed = True
            result.tag_removed = result.tag in served
            if result.tag_removed:
                gone.add(result.tag)
            after = after.remove(pr)
        if after == state:
            return None
        if not gone:
            return Planned(after)
        return Planned(after, without_tags(service, gone), update_mask=("traffic",))

    preview_state.apply(
        cloud_run, project=target.project, region=target.region, service=target.service, transition=teardown
    )
    removed = [r.tag for r in results.values() if r.record_removed]
    log.info("Removed %d expired preview(s) of %s: %s", len(removed), spec.name, ", ".join(removed) or "none")
    return list(results.values())


def remove_lost_previews(
    spec: ServiceSpec,
    *,
    cloud_run: CloudRunPreviewHook,
    proxy: ProxyHook,
    liveness: Liveness | None = None,
) -> list[Removal]:
    """Repair the previews of ``spec`` whose tag Cloud Run deleted on its own: routes, then records.

    Past 2,000 tags in a project and region, Cloud Run deletes the writing service's oldest tags
    that have no traffic percentage (every preview tag), leaving faye's record, slot claim and route
    behind. This finds them (:meth:`PreviewState.lost`: no tag, no deploy in flight), removes the
    routes that still route their slots to their tags, then drops all their records in one write of
    the service (:meth:`PreviewState.forget_lost`, decided again on the state it writes over, so a
    preview redeployed or claimed meanwhile is kept). The service's traffic is not touched: the tags
    are gone already. A service Cloud Run does not know is left alone.

    ``liveness`` decides which claims are deploys in flight; without Airflow's active runs (the
    default) every claim younger than ``CLAIM_GRACE_SECONDS`` counts as one.
    """
    target = spec.cloud_run
    liveness = liveness or Liveness(now_ms=ms(time.time()))
    current = cloud_run.get_service(project=target.project, region=target.region, service=target.service)
    if current is None:
        return []
    first = PreviewState.read(current).lost(tags(current), liveness)
    results = {p.pr: Removal(service=spec.name, pr=p.pr, tag=p.tag) for p in first}
    if not results:
        return []
    by_tag = {r.tag: r for r in results.values()}
    for route in proxy.list_slot_routes():
        result = by_tag.get(route.tag)
        if route.service != spec.name or result is None:
            continue
        # Re-check the route itself: a deploy may have re-routed the slot meanwhile.
        again = proxy.get_slot_route(route.slot)
        still = again is not None and (again.service, again.tag) == (spec.name, route.tag)
        if still and proxy.delete_slot_route(route.slot):
            result.routes_removed.append(route.slot)

    def forget(state: PreviewState, service: run_v2.Service | None) -> Planned | None:
        if service is None:
            return None
        after, gone = state.forget_lost(tags(service), liveness, among=results)
        dropped = {p.pr for p in gone}
        for pr, result in results.items():
            result.record_removed = pr in dropped
            result.skipped = "" if pr in dropped else "no longer lost (changed during the repair)"
        return Planned(after) if gone else None

    preview_state.apply(
        cloud_run, project=target.project, region=target.region, service=target.service, transition=forget
    )
    repaired = [r.tag for r in results.values() if r.record_removed]
    log.info(
        "Cloud Run no longer serves %d preview tag(s) of %s: removed their records and routes: %s",
        len(repaired),
        spec.name,
        ", ".join(repaired) or "none",
    )
    return list(results.values())


def still_expired(pr: int, now: float | None = None, max_lifetime_hours: int | None = None) -> StillWanted:
    """Return a check that the PR's record is (still) expired, or past ``max_lifetime_hours`` since its
    first deploy, and not pinned, on a fresh read."""

    def check(state: PreviewState) -> bool:
        record = state.get(pr)
        return record is not None and record.is_expired(
            time.time() if now is None else now, max_lifetime_hours
        )

    return check
