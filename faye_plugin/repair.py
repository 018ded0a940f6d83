"""Self-repair: put Cloud Run tags, preview records (slot claims), proxy routes and test-server leases
back in agreement, through the same transitions and hooks the DAGs use.

Shared by ``faye doctor --fix`` and ``faye_cleanup`` (task ``repair_lost``): one repair path.

What is repaired, and how (a platform engineer's choices; docs/queue.md § "faye doctor --fix"):

- a Cloud Run tag ``pr-N`` with no slot claim (no record, or a record holding no slot) and no deploy
  of PR N in flight: the tag goes, with its record (``PreviewState.remove``, one etag-guarded write
  that drops the tag from the traffic), after every route to it is gone or re-pointed;
- a record (slot claim) whose tag Cloud Run no longer serves: ``remove_lost_previews`` (routes, then
  all such records in one write);
- a route to a tag Cloud Run no longer serves, or to a slot nobody claims: the route is removed;
- a route to another preview, URL or sha than the claim of its slot says: the route is re-pointed to
  the claim's tag URL (as ``update_proxy`` writes it); a claimed, settled slot with no route gets one;
- a test-server lease whose holder task instance no longer runs that try: released (its container
  removed by id, with the test containers the dead holder left).

Left alone, with the reason said: anything a deploy in flight holds (its claim is live, or Airflow
lists an active ``faye_deploy`` run of that service and PR), a pinned preview, routes and slots the
catalogue does not know, services Cloud Run does not know, two claims on one slot, a tag whose URL
Cloud Run does not serve yet, a claim whose revision or sha differ from the tag's, missing images.

Never undo a deploy in flight: the active deploy runs are listed BEFORE anything is read
(:func:`deploys_in_flight`; a claim made after the listing is live whatever the list says), every
route change re-reads the route first, and the tag write decides again on the state it writes over.
:func:`decide` is pure (tests/unit/test_repair.py); :func:`repair_service` applies it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from faye_plugin.naming import TAG_RE, pr_of, tag_of
from faye_plugin.preview_state import Liveness, Planned, Preview, PreviewState, ms

if TYPE_CHECKING:
    from google.cloud import run_v2

    from faye_plugin.catalogue import Catalogue, DockerHost, ServiceSpec
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook
    from faye_plugin.hooks.lease_holders import LeaseHolderHook
    from faye_plugin.hooks.proxy import ProxyHook, SlotRoute
    from faye_plugin.hooks.test_servers import Lease

log = logging.getLogger(__name__)

# What a repair does.
REMOVE_ROUTE = "remove route"
POINT_ROUTE = "point route"
REMOVE_TAG = "remove tag"
FORGET_LOST = "forget lost record"
RELEASE_LEASE = "release lease"
LEFT = "left"


@dataclass(frozen=True)
class Repair:
    """One repair decided (and, once applied, whether it was done). ``LEFT`` ones say why not."""

    action: str
    service: str  # catalogue service, or the test server for a lease
    what: str  # the inconsistency, as a person reads it
    pr: int | None = None
    slot: str = ""
    route: SlotRoute | None = None  # the route as read (re-checked before it is changed)
    target: SlotRoute | None = None  # POINT_ROUTE: the route to write (hostname filled in on apply)
    lease: Lease | None = None
    done: bool = False
    note: str = ""  # LEFT: why; applied: what happened instead, if anything

    def __str__(self) -> str:
        if self.action == LEFT:
            return f"left   {self.service}: {self.what}: {self.note}"
        verb = "fixed " if self.done else "skipped"
        tail = f" ({self.note})" if self.note else ""
        return f"{verb} {self.service}: {self.what} -> {self.action}{tail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "service": self.service,
            "what": self.what,
            "pr": self.pr,
            "slot": self.slot,
            "done": self.done,
            "note": self.note,
        }


@dataclass(frozen=True)
class InFlight:
    """The deploys in flight: the liveness of claims, and the PRs with an active ``faye_deploy`` run.

    ``deploying`` None: Airflow could not be asked; a tag without a record is then left alone.
    """

    liveness: Liveness
    deploying: Mapping[str, frozenset[int]] | None = None

    def prs(self, service: str) -> frozenset[int] | None:
        return None if self.deploying is None else self.deploying.get(service, frozenset())


@dataclass(frozen=True)
class ServiceView:
    """What the repair reads of one catalogue service on Cloud Run."""

    name: str
    slots: tuple[str, ...]
    exists: bool
    served: frozenset[str] = frozenset()  # every tag in the traffic (spec and status)
    revisions: Mapping[str, str] = field(default_factory=dict)  # tag -> revision it points at
    urls: Mapping[str, str] = field(default_factory=dict)  # tag -> URL Cloud Run serves it at
    state: PreviewState = field(default_factory=PreviewState)


def _host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()


def _same_sha(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


def _want(view: ServiceView, holder: Preview, route: SlotRoute | None) -> SlotRoute | None:
    """The route ``update_proxy`` would have written for ``holder``, or None when its tag has no URL."""
    from faye_plugin.hooks.proxy import SlotRoute

    url = view.urls.get(holder.tag)
    if not url:
        return None
    return SlotRoute(
        slot=holder.slot,
        hostname=route.hostname if route is not None else "",
        upstream_url=url,
        service=view.name,
        pr=holder.pr,
        sha=holder.sha,
        revision=holder.revision or view.revisions.get(holder.tag, ""),
        tag=holder.tag,
    )


def _agrees(route: SlotRoute, want: SlotRoute) -> bool:
    return (
        route.tag == want.tag
        and int(route.pr) == want.pr
        and _host(route.upstream_url) == _host(want.upstream_url)
        and (not route.sha or not want.sha or _same_sha(route.sha, want.sha))
    )


def _stray(view: ServiceView, tag: str, liveness: Liveness, deploying: frozenset[int] | None) -> str:
    """Why the preview tag ``tag`` (served, holding no slot) must be left ("" = remove it)."""
    pr = pr_of(tag)
    record = view.state.by_tag(tag)
    if deploying is None:
        return "Airflow's deploy runs cannot be listed, so a deploy in flight cannot be ruled out"
    if pr in deploying or (record is not None and liveness.live(record)):
        return f"a deploy of PR {pr} is in flight"
    if record is not None and record.pinned:
        return f"PR {pr} is pinned (faye unpin, then repair)"
    return ""


def decide(
    view: ServiceView, routes: Iterable[SlotRoute], liveness: Liveness, deploying: frozenset[int] | None
) -> list[Repair]:
    """Every repair of one service (pure). ``routes``: the proxy's slot routes of this service."""
    name = view.name
    routes = [r for r in routes if r.service == name]
    if not view.exists:
        return [
            Repair(
                LEFT, name, f"route {r.slot} to {r.tag}", r.pr, r.slot, note="Cloud Run has no such service"
            )
            for r in routes
        ]
    busy = set(deploying or ())

    def live(p: Preview) -> bool:
        return p.pr in busy or liveness.live(p)

    out: list[Repair] = []
    # records whose tag Cloud Run no longer serves (remove_lost_previews decides them again)
    for p in view.state:
        if not (p.slot or p.revision) or p.tag in view.served:
            continue
        what = f"claim {p.tag} of slot {p.slot or '-'} without a tag"
        if live(p):
            out.append(Repair(LEFT, name, what, p.pr, p.slot, note=f"the deploy of PR {p.pr} is in flight"))
        else:
            out.append(Repair(FORGET_LOST, name, what, p.pr))
    holders: dict[str, list[Preview]] = {}
    for p in view.state:
        if p.slot:
            holders.setdefault(p.slot, []).append(p)
    unsafe_slots = {s for s, ps in holders.items() if len(ps) > 1}
    for slot in sorted(unsafe_slots):
        tags = ", ".join(p.tag for p in holders[slot])
        out.append(
            Repair(LEFT, name, f"slot {slot} claimed by {tags}", slot=slot, note="two claims: pick by hand")
        )
    # routes, slot by slot
    routed: set[str] = set()
    for route in routes:
        routed.add(route.slot)
        what = f"route {route.slot} to {route.tag} ({_host(route.upstream_url)})"
        if route.slot not in view.slots:
            out.append(
                Repair(LEFT, name, what, route.pr, route.slot, route, note="not a slot of the catalogue")
            )
            continue
        if route.slot in unsafe_slots:
            continue
        holder = holders.get(route.slot, [None])[0]
        taker = view.state.taker(route.slot, liveness)
        if (holder is not None and live(holder)) or taker is not None:
            by = holder if holder is not None and live(holder) else taker
            assert by is not None
            note = f"the deploy of PR {by.pr} in flight writes this slot's route"
            want = _want(view, holder, route) if holder is not None else None
            if want is None or not _agrees(route, want):
                out.append(Repair(LEFT, name, what, route.pr, route.slot, route, note=note))
            continue
        if holder is None or holder.tag not in view.served:
            why = "nothing claims the slot" if holder is None else f"{holder.tag} is gone"
            if route.tag not in view.served:
                why = f"Cloud Run does not serve {route.tag}"
            out.append(Repair(REMOVE_ROUTE, name, f"{what}: {why}", route.pr, route.slot, route))
            continue
        want = _want(view, holder, route)
        if want is None:
            if route.tag != holder.tag:
                out.append(
                    Repair(LEFT, name, what, route.pr, route.slot, route, note=f"{holder.tag} has no URL yet")
                )
            continue
        if not _agrees(route, want):
            why = f"the claim says {holder.tag} at {_host(want.upstream_url)}"
            out.append(Repair(POINT_ROUTE, name, f"{what}: {why}", holder.pr, route.slot, route, want))
    # claimed, settled slots with no route
    for slot, (holder, *_) in sorted(holders.items()):
        if slot in routed or slot in unsafe_slots or slot not in view.slots or live(holder):
            continue
        if view.state.taker(slot, liveness) is not None:
            continue  # release_slot of a deploy in flight removed the holder's route: not put back
        if holder.tag not in view.served:
            continue  # a lost record: FORGET_LOST above
        want = _want(view, holder, None)
        if want is not None:
            out.append(
                Repair(
                    POINT_ROUTE,
                    name,
                    f"slot {slot} claimed by {holder.tag} has no route",
                    holder.pr,
                    slot,
                    None,
                    want,
                )
            )
    # preview tags that hold no slot
    repointed = {r.route.slot for r in out if r.action in (REMOVE_ROUTE, POINT_ROUTE) and r.route is not None}
    for tag in sorted(t for t in view.served if TAG_RE.match(t)):
        record = view.state.by_tag(tag)
        if record is not None and record.slot:
            continue
        what = f"tag {tag} ({view.revisions.get(tag, '?')}) without a slot claim"
        why = _stray(view, tag, liveness, deploying)
        kept = [r.slot for r in routes if r.tag == tag and r.slot not in repointed]
        if not why and kept:
            why = f"route {', '.join(kept)} still points at it"
        out.append(
            Repair(LEFT, name, what, pr_of(tag), note=why)
            if why
            else Repair(REMOVE_TAG, name, what, pr_of(tag))
        )
    return out


def decide_lease(server: str, lease: Lease | None, alive: bool | None) -> Repair | None:
    """The repair of one test server's lease (pure): release it when its task-instance holder is over.

    ``alive`` is what Airflow says of the holder (None: not asked; holders that are not task instances,
    a person or a test holding a server by hand, are theirs to release).
    """
    if lease is None or lease.task_holder is None or alive is None or alive:
        return None
    return Repair(
        RELEASE_LEASE, server, f"lease held by {lease.holder}, a task instance that has finished", lease=lease
    )


# ------------------------------------------------------------------------------------------------ apply


def deploys_in_flight() -> InFlight:
    """Airflow's active ``faye_deploy`` runs, listed now (call it BEFORE reading any service).

    A claim made after the listing counts as live whatever the list says (as at the safe point). When
    the API cannot be reached, every claim younger than ``CLAIM_GRACE_SECONDS`` counts as live and no
    tag without a record is removed: slower to repair, never wrong.
    """
    from faye_plugin.exceptions import AirflowApiError
    from faye_plugin.hooks.airflow_api import AirflowApiHook
    from faye_plugin.queue import DEPLOY_DAG

    listed_ms = ms(time.time())
    try:
        runs = AirflowApiHook().list_active_runs(DEPLOY_DAG)
    except AirflowApiError as exc:
        log.warning("cannot list the active deploy runs (%s): claims count as live for their grace", exc)
        return InFlight(Liveness(now_ms=ms(time.time())))
    deploying: dict[str, set[int]] = {}
    for run in runs:
        if run.service is not None and run.pr is not None:
            deploying.setdefault(run.service, set()).add(run.pr)
    return InFlight(
        Liveness(now_ms=ms(time.time()), active_runs=frozenset(r.run_id for r in runs), listed_ms=listed_ms),
        {k: frozenset(v) for k, v in deploying.items()},
    )


def read_view(spec: ServiceSpec, service: run_v2.Service | None) -> ServiceView:
    from faye_plugin.hooks.cloud_run import tag_revision, tag_uri, tags

    if service is None:
        return ServiceView(spec.name, tuple(spec.slots), exists=False)
    served = frozenset(tags(service))
    return ServiceView(
        spec.name,
        tuple(spec.slots),
        exists=True,
        served=served,
        revisions={t: r for t in served if (r := tag_revision(service, t))},
        urls={t: u for t in served if (u := tag_uri(service, t))},
        state=PreviewState.read(service),
    )


def repair_service(
    spec: ServiceSpec, *, cloud_run: CloudRunPreviewHook, proxy: ProxyHook, inflight: InFlight
) -> list[Repair]:
    """Decide and apply the repairs of one service: routes first, then records, then stray tags."""
    from faye_plugin.removal import remove_lost_previews

    target = spec.cloud_run
    service = cloud_run.get_service(project=target.project, region=target.region, service=target.service)
    view = read_view(spec, service)
    routes = [r for r in proxy.list_slot_routes() if r.service == spec.name]
    deploying = inflight.prs(spec.name)
    decided = decide(view, routes, inflight.liveness, deploying)
    done: list[Repair] = []
    for repair in decided:
        if repair.action in (REMOVE_ROUTE, POINT_ROUTE):
            done.append(_apply_route(repair, proxy))
    if any(r.action == FORGET_LOST for r in decided):
        removals = {
            r.pr: r
            for r in remove_lost_previews(spec, cloud_run=cloud_run, proxy=proxy, liveness=inflight.liveness)
        }
        for repair in decided:
            if repair.action == FORGET_LOST:
                removal = removals.get(int(repair.pr or 0))
                ok = removal is not None and removal.record_removed
                note = "" if ok else (removal.skipped if removal is not None else "no longer lost")
                done.append(replace(repair, done=ok, note=note))
    strays = [r for r in decided if r.action == REMOVE_TAG]
    if strays:
        done.extend(_remove_stray_tags(spec, strays, cloud_run=cloud_run, proxy=proxy, inflight=inflight))
    done.extend(r for r in decided if r.action == LEFT)
    return done


def _apply_route(repair: Repair, proxy: ProxyHook) -> Repair:
    """Remove or re-point one route, only if the slot still routes as it did when decided."""
    now = proxy.get_slot_route(repair.slot)
    if now != repair.route:
        return replace(repair, note="the route changed meanwhile")
    if repair.action == REMOVE_ROUTE:
        return replace(repair, done=proxy.delete_slot_route(repair.slot))
    assert repair.target is not None
    proxy.upsert_slot_route(replace(repair.target, hostname=proxy.slot_hostname(repair.slot)))
    return replace(repair, done=True)


def _remove_stray_tags(
    spec: ServiceSpec,
    strays: list[Repair],
    *,
    cloud_run: CloudRunPreviewHook,
    proxy: ProxyHook,
    inflight: InFlight,
) -> list[Repair]:
    """Remove the stray tags (and their slot-less records) in one etag-guarded write of the service,
    deciding each again on the state and service it writes over; a tag a route points at stays."""
    from faye_plugin import preview_state
    from faye_plugin.hooks.cloud_run import tags, without_tags

    target = spec.cloud_run
    routed = {r.tag for r in proxy.list_slot_routes() if r.service == spec.name}
    results = {r.pr: r for r in strays}
    deploying = inflight.prs(spec.name)

    def remove(state: PreviewState, service: run_v2.Service | None) -> Planned | None:
        if service is None:
            return None
        view = ServiceView(spec.name, tuple(spec.slots), True, frozenset(tags(service)), state=state)
        after, gone = state, set()
        for pr, repair in list(results.items()):
            assert pr is not None
            tag, record = tag_of(pr), state.get(pr)
            why = _stray(view, tag, inflight.liveness, deploying)
            if tag not in view.served:
                why = "gone meanwhile"
            elif record is not None and record.slot:
                why = f"claimed slot {record.slot} meanwhile"
            elif tag in routed:
                why = "a route points at it"
            results[pr] = replace(repair, done=not why, note=why)
            if not why:
                gone.add(tag)
                after = after.remove(pr)
        if not gone:
            return None
        return Planned(after, without_tags(service, gone), update_mask=("traffic",))

    preview_state.apply(
        cloud_run, project=target.project, region=target.region, service=target.service, transition=remove
    )
    return list(results.values())


def repair_leases(servers: Collection[DockerHost], holders: LeaseHolderHook | None = None) -> list[Repair]:
    """Release every test-server lease whose holder task instance has finished (by container id)."""
    from faye_plugin.hooks.lease_holders import LeaseHolderHook
    from faye_plugin.hooks.test_servers import UNREACHABLE_ERRORS, TestServerHook

    holders = holders or LeaseHolderHook()
    out: list[Repair] = []
    for server in servers:
        hook = TestServerHook(server, holders=holders)
        try:
            lease = hook.current_lease()
        except UNREACHABLE_ERRORS as exc:
            out.append(Repair(LEFT, server.name, "test server", note=f"unreachable: {exc}"))
            continue
        task = lease.task_holder if lease is not None else None
        repair = decide_lease(server.name, lease, None if task is None else holders.is_alive(task))
        if repair is None or lease is None:
            continue
        released = hook.release(lease)  # only if the server still holds exactly this container
        if released:
            hook.remove_test_containers(lease.holder)
        out.append(replace(repair, done=released, note="" if released else "the lease changed meanwhile"))
    return out


def stale_leases(servers: Collection[DockerHost], holders: LeaseHolderHook | None = None) -> list[str]:
    """Doctor's view of the leases: one line per lease whose holder task instance has finished."""
    from faye_plugin.hooks.lease_holders import LeaseHolderHook
    from faye_plugin.hooks.test_servers import UNREACHABLE_ERRORS, TestServerHook

    holders = holders or LeaseHolderHook()
    problems: list[str] = []
    for server in servers:
        hook = TestServerHook(server, holders=holders)
        try:
            lease = hook.current_lease()
        except UNREACHABLE_ERRORS:
            continue  # a server down is not an inconsistency of faye's (faye pool status shows it)
        task = lease.task_holder if lease is not None else None
        repair = decide_lease(server.name, lease, None if task is None else holders.is_alive(task))
        if repair is not None:
            problems.append(f"test server {server.name}: {repair.what}")
    return problems


def repair_all(catalogue: Catalogue, *, leases: bool = True) -> list[Repair]:
    """Every repair of every catalogue service (and the test servers' leases), applied."""
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook
    from faye_plugin.hooks.proxy import ProxyHook

    inflight = deploys_in_flight()  # before any read
    out: list[Repair] = []
    for spec in sorted(catalogue.services.values(), key=lambda s: s.name):
        try:
            out.extend(
                repair_service(
                    spec,
                    cloud_run=CloudRunPreviewHook(gcp_conn_id=spec.cloud_run.gcp_conn_id),
                    proxy=ProxyHook(proxy_conn_id=spec.proxy_conn_id),
                    inflight=inflight,
                )
            )
        except Exception as exc:  # one peer that cannot be repaired does not stop the others
            log.exception("cannot repair %s", spec.name)
            out.append(Repair(LEFT, spec.name, "service", note=f"cannot repair: {exc}"))
    if leases:
        out.extend(repair_leases(catalogue.test_servers))
    for repair in out:
        log.info("%s", repair)
    return out
