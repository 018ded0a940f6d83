"""The slot rules, as pure functions: who holds each slot, which slot a deploy takes, and what it waits for.

A service has a few named slots (stable hostnames of the proxy). Who holds one is read from the
service's preview state (:mod:`faye_plugin.preview_state`: the slot claims) and the proxy's routes (a
route whose PR has no record still holds its slot). ``get_cloud_run_config`` uses :func:`choose_slot`
to pick a slot early (and check the request can be served at all); the safe point (``still_newest``)
decides again on a fresh read, inside the write that claims the slot, so the claim is the decision.
Nothing here does I/O (tests/unit/test_slots.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from faye_plugin.exceptions import SlotBusyError
from faye_plugin.preview_state import CLAIM_GRACE_SECONDS, Liveness, Preview, PreviewState


@dataclass(frozen=True)
class Holder:
    """The preview that holds a slot."""

    pr: int
    sha: str | None = None
    deployed_at: float | None = None  # epoch s of its last finished deploy; None: its deploy is live
    pinned: bool = False
    claimed_at: float | None = None  # epoch s of the claim of a deploy still live

    def describe(self) -> str:
        sha = (self.sha or "?")[:7]
        extra = ", pinned" if self.pinned else ""
        if self.deployed_at is None:
            extra += ", deploying"
        return f"PR {self.pr} (sha {sha}{extra})"


@dataclass(frozen=True)
class SlotDecision:
    """The slot a deploy takes; ``evict`` is the preview it displaces (its route and tag are removed)."""

    slot: str | None  # None: no slot now (wait)
    evict: Holder | None = None
    reason: str = ""

    @property
    def waits(self) -> bool:
        return self.slot is None


def _holder(preview: Preview, liveness: Liveness) -> Holder:
    live = liveness.live(preview)
    return Holder(
        pr=preview.pr,
        sha=preview.sha or None,
        deployed_at=None if live else (float(preview.deployed_at) if preview.revision else 0.0),
        pinned=preview.pinned,
        claimed_at=preview.claimed_ms / 1000 if live else None,
    )


def holders(
    state: PreviewState, routes: Iterable[Any], *, service: str, liveness: Liveness
) -> dict[str, Holder]:
    """Who holds each slot of ``service``: its claims (a live take-over counts as the taker's), then routes.

    A preview whose deploy is live (:meth:`Liveness.live`) is a mid-deploy holder (``deployed_at`` None):
    never evicted. A route whose PR has no record still holds its slot. Routes of other services are
    ignored: slot names are hostnames, so the catalogue gives each service its own (docs/deploy.md).
    """
    found: dict[str, Holder] = {}
    for preview in state:
        if preview.slot:
            found[preview.slot] = _holder(preview, liveness)
    for preview in state:
        if preview.taking and liveness.live(preview):
            found[preview.taking] = _holder(preview, liveness)
    for route in routes:
        if route.service != service or route.slot in found:
            continue
        record = state.get(int(route.pr))
        found[route.slot] = (
            _holder(record, liveness)
            if record is not None
            else Holder(pr=int(route.pr), sha=route.sha or None, deployed_at=0.0)
        )
    return found


def last_used(holder: Holder) -> float:
    """When a holder was last used: its last deploy, else (mid-deploy) its claim."""
    return holder.deployed_at if holder.deployed_at is not None else (holder.claimed_at or 0.0)


def evictable(holder: Holder, now: float) -> bool:
    if holder.pinned:
        return False
    if holder.deployed_at is None:
        # A live claim is not taken away, unless it was abandoned long ago.
        return holder.claimed_at is not None and now - holder.claimed_at > CLAIM_GRACE_SECONDS
    return True


def describe_holders(found: Mapping[str, Holder]) -> str:
    return ", ".join(f"{slot}: {h.describe()}" for slot, h in sorted(found.items())) or "none"


def choose_slot(
    *,
    service: str,
    pr: int,
    requested_slot: str | None,
    service_slots: Sequence[str],
    holders: Mapping[str, Holder],
    policy: str,
    now: float,
) -> SlotDecision:
    """Pick the slot for a deploy of ``pr``.

    ``requested_slot`` given: that slot (evicting its holder if another PR holds it, unless pinned or
    mid-deploy: then wait, or fail under ``fail``). Otherwise the slot the PR already holds, else a free
    one (in catalogue order), else by ``policy``: ``evict-oldest`` takes the slot of the least recently
    deployed preview that is neither pinned nor mid-deploy (and waits when there is none); ``wait``
    returns ``SlotDecision(None)``; ``fail`` raises SlotBusyError naming every slot and its holder.
    """
    if policy not in ("evict-oldest", "wait", "fail"):
        raise ValueError(f"unknown slot policy {policy!r}")
    known = {slot: h for slot, h in holders.items() if slot in service_slots}
    if requested_slot is not None:
        if requested_slot not in service_slots:
            raise ValueError(
                f"unknown slot {requested_slot!r} for {service}: its slots are {', '.join(service_slots)}"
            )
        holder = known.get(requested_slot)
        if holder is None or holder.pr == pr:
            return SlotDecision(requested_slot, None, "the slot asked for")
        if evictable(holder, now):
            return SlotDecision(requested_slot, holder, f"the slot asked for, taken from {holder.describe()}")
        if policy != "fail":
            return SlotDecision(None, None, f"slot {requested_slot} is held by {holder.describe()}")
        return _busy(service, pr, policy, {requested_slot: holder}, f"slot {requested_slot} is held")
    for slot in service_slots:
        holder = known.get(slot)
        if holder is not None and holder.pr == pr:
            return SlotDecision(slot, None, "the slot this PR already holds")
    for slot in service_slots:
        if slot not in known:
            return SlotDecision(slot, None, "a free slot")
    if policy == "evict-oldest":
        candidates = [(slot, h) for slot, h in known.items() if evictable(h, now)]
        if candidates:
            slot, holder = min(candidates, key=lambda item: (last_used(item[1]), item[0]))
            return SlotDecision(
                slot, holder, f"evicting the least recently deployed preview, {holder.describe()}"
            )
        # Nothing may be evicted right now (pinned or mid-deploy): wait for a slot.
        return SlotDecision(
            None, None, f"every slot of {service} is pinned or deploying: {describe_holders(known)}"
        )
    return _busy(service, pr, policy, known, f"no free slot for {service}")


def _busy(service: str, pr: int, policy: str, found: Mapping[str, Holder], what: str) -> SlotDecision:
    message = f"{what} (PR {pr} asked; slot policy {policy}): {describe_holders(found)}"
    if policy == "fail":
        raise SlotBusyError(message)
    return SlotDecision(None, None, message)


def claim(
    state: PreviewState,
    *,
    pr: int,
    run_id: str,
    requested_ms: int,
    requested_slot: str | None,
    service: str,
    service_slots: Sequence[str],
    routes: Iterable[Any],
    policy: str,
    liveness: Liveness,
    expires: int,
    hint: str | None = None,
) -> tuple[PreviewState | None, SlotDecision]:
    """The safe point's claim, decided and made on one fresh read of the state.

    Returns the new state and the decision, or ``(None, decision)`` when the deploy must wait (the
    decision's reason says for what). Under the ``fail`` policy a busy service raises SlotBusyError,
    naming first who took ``hint`` (the slot chosen when the run started) since.
    """
    now = liveness.now_ms / 1000
    found = holders(state, routes, service=service, liveness=liveness)
    try:
        decision = choose_slot(
            service=service,
            pr=pr,
            requested_slot=requested_slot,
            service_slots=service_slots,
            holders=found,
            policy=policy,
            now=now,
        )
    except SlotBusyError as exc:
        taken = found.get(hint) if hint is not None else None
        if taken is None or taken.pr == pr:
            raise
        raise SlotBusyError(f"slot {hint} was taken by {taken.describe()}; {exc}") from exc
    if decision.slot is None:
        return None, decision
    new = state.claim(
        pr,
        decision.slot,
        run_id=run_id,
        requested_ms=requested_ms,
        liveness=liveness,
        expires=expires,
        evicts=decision.evict.pr if decision.evict is not None else None,
    )
    return new, decision


def slot_to_wait_for(holders: Mapping[str, Holder], service_slots: Iterable[str]) -> str | None:
    """Return the slot a deploy that must wait for one should queue on, or None if waiting is hopeless.

    That is the slot of the least recently used preview that is not pinned (a mid-deploy one counts
    from its claim): it is the first to become evictable. Every slot pinned -> None.
    """
    candidates = [
        (last_used(holder), slot)
        for slot in service_slots
        if (holder := holders.get(slot)) is not None and not holder.pinned
    ]
    return min(candidates)[1] if candidates else None
