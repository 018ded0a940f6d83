"""``faye doctor``: compare the catalogue, Cloud Run, the proxy and the registry; list every disagreement.

faye keeps no state of its own: who holds a slot is the slot claim in the service's preview state
(:mod:`faye_plugin.preview_state`), the Cloud Run tag ``pr-<N>`` and the proxy route of the slot. Those
three must agree, the image of every serving preview must be in the registry, and no test server may
stay leased by a task instance that has finished. ``faye doctor --fix`` repairs what it can
(:mod:`faye_plugin.repair`). :func:`compare` is
pure (tests/unit/test_doctor.py); :func:`collect` reads the peers through the hooks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faye_plugin.catalogue import Catalogue
from faye_plugin.naming import TAG_RE


@dataclass(frozen=True)
class Claim:
    """A preview recorded in the annotation: the tag's PR, sha, revision and slot ("" = none)."""

    tag: str
    pr: int
    sha: str
    slot: str
    revision: str


@dataclass(frozen=True)
class Route:
    """A slot route of the proxy, with the preview it says it serves."""

    slot: str
    service: str
    pr: int
    sha: str
    revision: str
    tag: str
    upstream_url: str


@dataclass
class ServiceState:
    """What Cloud Run says about one catalogue service."""

    name: str  # catalogue name
    exists: bool
    slots: tuple[str, ...]
    image: str  # image repository (the tag is the sha)
    tags: dict[str, str] = field(default_factory=dict)  # tag -> revision it points at
    tag_urls: dict[str, str] = field(default_factory=dict)  # tag -> URL Cloud Run serves it at
    revision_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # revision -> labels
    claims: dict[str, Claim] = field(default_factory=dict)  # tag -> claim
    error: str | None = None  # the service could not be read


@dataclass
class Snapshot:
    services: dict[str, ServiceState]
    routes: list[Route]
    images: dict[tuple[str, str], bool]  # (repository, sha) -> in the registry
    errors: list[str] = field(default_factory=list)
    leases: list[str] = field(default_factory=list)  # leases of finished holders (repair.stale_leases)


def _host(url: str) -> str:
    return re.sub(r"^[a-z]+://", "", url).split("/", 1)[0].split(":", 1)[0].lower()


def _same_sha(a: str, b: str) -> bool:
    """Equal commits, allowing one side to be an abbreviation (7+ hex digits) of the other."""
    return a.startswith(b) or b.startswith(a)


def compare(snapshot: Snapshot) -> list[str]:
    """Every disagreement between the catalogue, Cloud Run, the proxy and the registry, one line each."""
    problems = list(snapshot.errors)
    routes_by_slot: dict[tuple[str, str], list[Route]] = {}
    for route in snapshot.routes:
        routes_by_slot.setdefault((route.service, route.slot), []).append(route)

    for route in snapshot.routes:
        state = snapshot.services.get(route.service)
        where = f"proxy route {route.slot} ({route.service} {route.tag})"
        if state is None:
            problems.append(f"{where}: service {route.service!r} is not in the catalogue")
            continue
        if route.slot not in state.slots:
            problems.append(
                f"{where}: {route.slot!r} is not a slot of {route.service} ({', '.join(state.slots)})"
            )
        if not state.exists:
            problems.append(f"{where}: Cloud Run has no service {route.service}")
            continue
        if route.tag not in state.tags:
            problems.append(f"{where}: Cloud Run does not serve tag {route.tag}")
            continue
        url = state.tag_urls.get(route.tag)
        if url and _host(url) != _host(route.upstream_url):
            problems.append(
                f"{where}: routes to {route.upstream_url}, but Cloud Run serves {route.tag} at {url}"
            )
        claim = state.claims.get(route.tag)
        if claim is None or claim.slot != route.slot:
            held = f"claims slot {claim.slot or 'none'}" if claim else "has no claim"
            problems.append(f"{where}: the annotation says {route.tag} {held}")
        elif claim.sha and route.sha and not _same_sha(claim.sha, route.sha):
            problems.append(f"{where}: the proxy says sha {route.sha[:7]}, the claim says {claim.sha[:7]}")

    for name, state in sorted(snapshot.services.items()):
        if state.error:
            problems.append(f"service {name}: {state.error}")
            continue
        if not state.exists:
            for tag in sorted(state.claims):
                problems.append(f"service {name}: claim {tag} recorded but Cloud Run has no service {name}")
            continue
        for tag, revision in sorted(state.tags.items()):
            match = TAG_RE.match(tag)
            if not match:
                continue
            if tag not in state.tag_urls:
                problems.append(
                    f"service {name}: the traffic spec puts tag {tag} on revision {revision}, "
                    "but Cloud Run does not serve it (a revision that never became ready?)"
                )
            claim = state.claims.get(tag)
            if claim is None or not claim.slot:
                problems.append(
                    f"service {name}: Cloud Run tag {tag} (revision {revision}) has no slot claim"
                )
                continue
            if claim.revision and claim.revision != revision:
                problems.append(
                    f"service {name}: claim {tag} says revision {claim.revision}, "
                    f"Cloud Run's tag points at {revision}"
                )
            labels = state.revision_labels.get(revision, {})
            if labels and labels.get("faye-pr") not in (None, match.group(1)):
                problems.append(
                    f"service {name}: tag {tag} points at {revision}, labelled PR {labels.get('faye-pr')}"
                )
            label_sha = labels.get("faye-sha")
            if label_sha and claim.sha and not _same_sha(label_sha, claim.sha):
                problems.append(
                    f"service {name}: tag {tag} revision {revision} is sha {label_sha[:7]}, "
                    f"the claim says {claim.sha[:7]}"
                )
            if claim.sha and snapshot.images.get((state.image, claim.sha)) is False:
                problems.append(
                    f"service {name}: image {state.image}:{claim.sha} of {tag} is not in the registry"
                )
        holders: dict[str, list[str]] = {}
        for tag, claim in sorted(state.claims.items()):
            if not claim.slot:
                continue
            holders.setdefault(claim.slot, []).append(tag)
            if claim.slot not in state.slots:
                problems.append(f"service {name}: claim {tag} holds {claim.slot!r}, not a slot of {name}")
            if tag not in state.tags:
                problems.append(
                    f"service {name}: claim {tag} holds slot {claim.slot} but Cloud Run has no tag {tag}"
                )
            if (name, claim.slot) not in routes_by_slot:
                problems.append(
                    f"service {name}: slot {claim.slot} is claimed by {tag} but the proxy has no route"
                )
        for slot, tags in sorted(holders.items()):
            if len(tags) > 1:
                problems.append(
                    f"service {name}: slot {slot} is claimed by {len(tags)} previews: {', '.join(tags)}"
                )
    for (service, slot), routes in sorted(routes_by_slot.items()):
        if len(routes) > 1:
            problems.append(f"proxy: slot {slot} of {service} has {len(routes)} routes")
    problems.extend(snapshot.leases)
    return problems


# --------------------------------------------------------------------------------------------- collect


def _service_state(name: str, spec: Any, hook: Any) -> ServiceState:
    from faye_plugin.hooks.cloud_run import short_name, tag_revision, tag_uri, tags
    from faye_plugin.preview_state import PreviewState, StateError

    target = spec.cloud_run
    state = ServiceState(name=name, exists=False, slots=tuple(spec.slots), image=spec.image)
    service = hook.get_service(project=target.project, region=target.region, service=target.service)
    if service is None:
        return state
    state.exists = True
    for tag in sorted(tags(service)):
        revision = tag_revision(service, tag)
        if revision:
            state.tags[tag] = short_name(revision)
        url = tag_uri(service, tag)
        if url:
            state.tag_urls[tag] = url
    for revision in set(state.tags.values()):
        found = hook.get_revision(f"{service.name}/revisions/{revision}")
        if found is not None:
            state.revision_labels[revision] = dict(found.labels)
    try:
        records = PreviewState.read(service)
    except StateError as exc:
        state.error = str(exc)
        return state
    for record in records:
        state.claims[record.tag] = Claim(
            record.tag, record.pr, record.sha, record.slot, short_name(record.revision or "")
        )
    return state


def collect(
    catalogue: Catalogue,
    *,
    cloud_run_hook: Callable[[str], Any],
    proxy_hook: Callable[[str], Any],
    registry_hook: Callable[[str], Any],
    leases: Callable[[], list[str]] | None = None,
) -> Snapshot:
    """Read every peer once. The factories build a hook from a connection id (the CLI and tests pass
    the real hook classes); ``leases`` lists the test-server leases of finished holders."""
    snapshot = Snapshot(services={}, routes=[], images={})
    proxies: dict[str, Any] = {}
    for name, spec in sorted(catalogue.services.items()):
        try:
            state = _service_state(name, spec, cloud_run_hook(spec.cloud_run.gcp_conn_id))
        except Exception as exc:  # report the peer that cannot be read, keep checking the others
            state = ServiceState(name=name, exists=False, slots=tuple(spec.slots), image=spec.image)
            state.error = f"cannot read Cloud Run service {spec.cloud_run.service}: {exc}"
        snapshot.services[name] = state
        proxies.setdefault(spec.proxy_conn_id, None)
        registry = registry_hook(spec.registry_conn_id)
        for claim in state.claims.values():
            if claim.sha and (spec.image, claim.sha) not in snapshot.images:
                try:
                    snapshot.images[(spec.image, claim.sha)] = bool(
                        registry.image_exists(spec.image, claim.sha)
                    )
                except Exception as exc:
                    snapshot.errors.append(f"registry: cannot check {spec.image}:{claim.sha}: {exc}")
    for conn_id in proxies:
        try:
            routes = proxy_hook(conn_id).list_slot_routes()
        except Exception as exc:
            snapshot.errors.append(f"proxy {conn_id}: cannot list routes: {exc}")
            continue
        snapshot.routes.extend(
            Route(r.slot, r.service, int(r.pr), r.sha, r.revision, r.tag, r.upstream_url) for r in routes
        )
    if leases is not None:
        try:
            snapshot.leases = leases()
        except Exception as exc:
            snapshot.errors.append(f"test servers: cannot check the leases: {exc}")
    return snapshot


def check(catalogue: Catalogue) -> list[str]:
    """Collect with faye's hooks (Airflow connections) and compare."""
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook
    from faye_plugin.hooks.proxy import ProxyHook
    from faye_plugin.hooks.registry import RegistryHook
    from faye_plugin.repair import stale_leases

    snapshot = collect(
        catalogue,
        cloud_run_hook=lambda conn_id: CloudRunPreviewHook(gcp_conn_id=conn_id),
        proxy_hook=lambda conn_id: ProxyHook(proxy_conn_id=conn_id),
        registry_hook=lambda conn_id: RegistryHook(registry_conn_id=conn_id),
        leases=lambda: stale_leases(catalogue.test_servers),
    )
    return compare(snapshot)


def summary(problems: Iterable[str], services: Mapping[str, Any] | None = None) -> str:
    problems = list(problems)
    if not problems:
        return "all consistent" + (f" ({len(services)} service(s) checked)" if services is not None else "")
    return "\n".join(problems)
