"""Preview bookkeeping as pure functions: expiry, who holds which slot, and when a deploy is a no-op.

Nothing here does I/O. The truth lives outside faye: the Cloud Run service's ``faye.dev/previews``
annotation (expiry, slot, sha, revision per tag), the revisions' immutable labels, and the proxy's
routes. The operators read those, and these functions decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from faye_plugin.catalogue import Defaults
from faye_plugin.exceptions import InvalidRequestError
from faye_plugin.hooks.cloud_run_model import PreviewRecord
from faye_plugin.queue import Holder

HOUR = 3600
# Revision labels set at deploy (immutable): who the revision was built for.
LABEL_PR = "faye-pr"
LABEL_SHA = "faye-sha"
LABEL_SLOT = "faye-slot"


def ttl_hours(requested: int | None, defaults: Defaults) -> int:
    """Return the preview lifetime in hours: the request's, else the catalogue default, within bounds."""
    hours = defaults.ttl_hours if requested is None else int(requested)
    if hours < 1 or hours > defaults.max_ttl_hours:
        raise InvalidRequestError(
            f"ttl_hours: {hours} is outside 1..{defaults.max_ttl_hours} (the catalogue's max_ttl_hours)"
        )
    return hours


def expires_at(now: float, hours: int) -> int:
    """Return the expiry (epoch seconds) of a preview touched at ``now`` that lives ``hours``."""
    return int(now) + hours * HOUR


def is_expired(record: PreviewRecord, now: float) -> bool:
    """True when the preview's expiry has passed and it is not pinned."""
    return not record.pinned and record.expires <= int(now)


def with_expiry(
    previews: Mapping[str, PreviewRecord], *, tag: str, pr: int, expires: int
) -> dict[str, PreviewRecord]:
    """Return ``previews`` with the expiry of ``tag`` pushed out to ``expires`` (never pulled in).

    A tag with no record yet gets one (no sha, slot or revision: those come with its deploy), so a
    preview whose deploy fails after this point still expires.
    """
    new = dict(previews)
    old = new.get(tag)
    if old is None:
        new[tag] = PreviewRecord(tag=tag, pr=pr, sha="", slot="", revision="", expires=expires)
    else:
        new[tag] = replace(old, expires=max(old.expires, expires))
    return new


def deployed_record(
    previews: Mapping[str, PreviewRecord],
    *,
    tag: str,
    pr: int,
    sha: str,
    slot: str,
    revision: str,
    expires: int,
    now: float,
) -> dict[str, PreviewRecord]:
    """Return ``previews`` recording that ``revision`` (sha, slot) now serves ``tag``.

    The record keeps its pin and the later of the two expiries. Any other tag's claim on ``slot`` is
    dropped (that preview was released before this deploy).
    """
    new: dict[str, PreviewRecord] = {}
    for other_tag, record in previews.items():
        released = other_tag != tag and record.slot == slot
        new[other_tag] = replace(record, slot="") if released else record
    old = new.get(tag)
    new[tag] = PreviewRecord(
        tag=tag,
        pr=pr,
        sha=sha,
        slot=slot,
        revision=revision,
        expires=max(expires, old.expires if old else 0),
        pinned=old.pinned if old else False,
        deployed_at=int(now),
    )
    return new


def holders_by_slot(
    service: str,
    records: Iterable[PreviewRecord],
    routes: Iterable[Any],
) -> dict[str, Holder]:
    """Return who holds each slot, from the proxy's routes and the service's preview records.

    A route is the public fact (the hostname answers for that preview), so it wins; a record that
    claims a slot without a route (its ``update_proxy`` never ran) still counts as a holder, so the slot
    is not handed out twice. Routes of other services are ignored: slot names are hostnames, so the
    catalogue gives each service its own (docs/deploy.md).
    """
    by_pr = {r.pr: r for r in records}
    holders: dict[str, Holder] = {}
    for record in by_pr.values():
        if record.slot:
            holders[record.slot] = _holder(record)
    for route in routes:
        if route.service != service:
            continue
        owner = by_pr.get(int(route.pr))
        if owner is not None:
            holders[route.slot] = _holder(owner)
        else:
            holders[route.slot] = Holder(pr=int(route.pr), sha=route.sha or None, deployed_at=0.0)
    return holders


def _holder(record: PreviewRecord) -> Holder:
    return Holder(
        pr=record.pr,
        sha=record.sha or None,
        deployed_at=float(record.deployed_at) if record.revision else 0.0,
        pinned=record.pinned,
    )


def sha_matches(requested: str, deployed: str | None) -> bool:
    """True when a deployed full sha is the requested one (which may be a 7+ character prefix)."""
    if not deployed:
        return False
    requested, deployed = requested.lower(), deployed.lower()
    return deployed == requested or (len(requested) < len(deployed) and deployed.startswith(requested))


def slot_to_wait_for(holders: Mapping[str, Holder], service_slots: Iterable[str]) -> str | None:
    """Return the slot a deploy that must wait for one should queue on, or None if waiting is hopeless.

    That is the slot of the least recently used preview that is not pinned (a mid-deploy one counts
    from its claim): it is the first to become evictable. Every slot pinned → None.
    """
    candidates = [
        (holder.deployed_at if holder.deployed_at is not None else (holder.claimed_at or 0.0), slot)
        for slot in service_slots
        if (holder := holders.get(slot)) is not None and not holder.pinned
    ]
    return min(candidates)[1] if candidates else None
