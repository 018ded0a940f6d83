"""Remove one preview everywhere, in the one safe order: its proxy route first, then its Cloud Run tag.

Shared by ``release_slot`` (evicting the preview that held a slot), ``faye_cleanup`` (expired
previews) and ``faye unpin``/``faye previews`` tooling. The route goes first so no hostname ever routes
to a tag that no longer exists; the tag and its record in the ``faye.dev/previews`` annotation go in
one read-modify-write of the service (etag-checked, retried on a lost race).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.cloud import run_v2

from faye_plugin.catalogue import ServiceSpec
from faye_plugin.hooks.cloud_run import (
    CloudRunPreviewHook,
    preview_tag,
    read_previews,
    tags,
    without_tag,
    write_previews,
)
from faye_plugin.hooks.proxy import ProxyHook
from faye_plugin.previews import is_expired

log = logging.getLogger(__name__)

# Decides, on the freshly read service, whether the removal still applies (e.g. "still expired").
StillWanted = Callable[[run_v2.Service], bool]


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
) -> Removal:
    """Remove the preview of ``pr`` on ``spec``: its slot routes, its tag, its annotation record.

    ``only_if`` is checked on a fresh read before anything changes and again inside the service
    write; when it says no, nothing more is removed (``skipped`` says why). Removing a preview that is
    already gone changes nothing and reports nothing removed.
    """
    target = spec.cloud_run
    tag = preview_tag(pr)
    result = Removal(service=spec.name, pr=pr, tag=tag)
    current = cloud_run.get_service(project=target.project, region=target.region, service=target.service)
    if current is not None and only_if is not None and not only_if(current):
        result.skipped = "no longer wanted (re-read before removal)"
        return result
    for route in proxy.list_slot_routes():
        if route.service == spec.name and int(route.pr) == pr and proxy.delete_slot_route(route.slot):
            result.routes_removed.append(route.slot)
    if current is None:
        return result

    def change(service: run_v2.Service | None) -> tuple[run_v2.Service, list[str]] | None:
        if service is None:
            return None
        if only_if is not None and not only_if(service):
            result.skipped = "no longer wanted (changed during removal)"
            return None
        previews = read_previews(service)
        has_tag = tag in tags(service)
        if not has_tag and tag not in previews:
            return None
        new = (
            without_tag(service, tag)
            if has_tag
            else run_v2.Service.deserialize(run_v2.Service.serialize(service))
        )
        result.tag_removed = has_tag
        result.record_removed = previews.pop(tag, None) is not None
        write_previews(new, previews)
        return new, ["traffic", "annotations"]

    cloud_run.modify_service(
        project=target.project, region=target.region, service=target.service, change=change
    )
    log.info("Removed preview %s of %s: %s", tag, spec.name, result.as_dict())
    return result


def still_expired(tag: str, now: float | None = None) -> StillWanted:
    """Return a check that ``tag``'s record is (still) expired and not pinned on a fresh read."""

    def check(service: run_v2.Service) -> bool:
        record = read_previews(service).get(tag)
        return record is not None and is_expired(record, time.time() if now is None else now)

    return check
