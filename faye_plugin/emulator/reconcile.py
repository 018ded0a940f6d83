"""Reconciliation: make the containers match what services ask for, then complete their Operations.

A write's Operation stays `done: false` while the revisions its traffic needs start. On success the
traffic really moves (`trafficStatuses`); on a failed revision the service keeps serving from its
previous revisions and the Operation ends with the revision's error, as Cloud Run does. Revisions that
serve nothing are stopped; a serving container that died is started again.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from faye_plugin.emulator.resources import (
    Naming,
    condition,
    finish_operation,
    now,
    service_wire,
    split_service,
)
from faye_plugin.emulator.store import Store

log = logging.getLogger(__name__)
STARTING, READY, FAILED = "starting", "ready", "failed"


class RevisionRuntime(Protocol):
    """What the engine needs from the container runtime."""

    def start(self, revision: str, service_id: str, revision_id: str, template: dict[str, Any]) -> None: ...
    def stop(self, revision: str) -> None: ...
    def forget(self, revision: str) -> None: ...
    def is_running(self, revision: str) -> bool: ...
    def port_of(self, revision: str) -> int | None: ...


class Reconciler:
    """The reconciliation half of the engine (it shares the engine's store, naming and runtime)."""

    store: Store
    naming: Naming
    runtime: RevisionRuntime | None
    #: per service: (the traffic list, the latest revision) its trafficStatuses were made from, and them
    statuses_made: dict[str, tuple[list[dict[str, Any]], str, list[dict[str, Any]]]]

    def start(self) -> None:
        """After a restart: resume every service's reconciliation (containers are adopted or restarted)."""
        with self.store.lock:
            for name in list(self.store.services):
                self._reconcile(name)
            if self.runtime is not None:  # revisions cut off mid-start: finish them so they get a state
                keep = self.keep_set()
                for full, meta in self.store.meta.items():
                    if meta.get("state") == STARTING and full not in keep and full in self.store.revisions:
                        service_name, _, revision_id = full.partition("/revisions/")
                        service_id = split_service(service_name)[2]
                        self.runtime.start(full, service_id, revision_id, meta["template"])
            self.store.save()

    def keep_set(self) -> set[str]:
        """Revisions whose containers should exist now (the rest are strays)."""
        with self.store.lock:
            keep: set[str] = set()
            for name, service in self.store.services.items():
                keep |= {f"{name}/revisions/{r}" for r in self._needed(service)}
            return keep

    def revision_died(self, service_name: str, revision_id: str) -> None:
        """The front door found a serving container gone: start it again, as Cloud Run replaces instances."""
        full = f"{service_name}/revisions/{revision_id}"
        with self.store.lock:
            if self.runtime is None or full not in self.store.revisions:
                return
            log.warning("revision %s stopped answering: starting it again", full)
            self.runtime.forget(full)
            self._reconcile(service_name)
            self.store.save()

    def revision_result(self, revision: str, ok: bool, message: str, port: int) -> None:
        """Record a container's readiness (runtime callback) and reconcile its service."""
        with self.store.lock:
            meta = self.store.meta.get(revision)
            resource = self.store.revisions.get(revision)
            if meta is None or resource is None:
                if self.runtime:
                    self.runtime.stop(revision)
                return
            log.info("revision %s: %s", revision, f"ready on port {port}" if ok else message)
            if ok:
                meta.update(state=READY)
                if resource["conditions"][0]["state"] != "CONDITION_SUCCEEDED":
                    resource["conditions"] = [condition("Ready", "CONDITION_SUCCEEDED")]
            else:
                meta.update(state=FAILED, message=message)
                resource["conditions"] = [
                    condition("Ready", "CONDITION_FAILED", message, "ERROR", reason="REVISION_FAILED")
                ]
            resource.update(reconciling=False, updateTime=now())
            self._reconcile(resource["service"])
            self.store.save()

    def _reconcile(self, name: str) -> None:
        service = self.store.services.get(name)
        if service is None or self.runtime is None:
            return
        _, _, service_id = split_service(name)
        waiting, failure = False, ""
        wanted = self._targets(service) if service.get("reconciling") else set()
        for revision_id in self._needed(service):
            full = f"{name}/revisions/{revision_id}"
            meta = self.store.meta[full]
            if meta["state"] == FAILED:
                # Only the spec's targets fail a write: a serving revision that died must not block
                # moving traffic off it.
                if revision_id in wanted:
                    failure = failure or meta.get("message", f"Revision '{revision_id}' is not ready.")
            elif meta["state"] == STARTING or not self.runtime.is_running(full):
                waiting = True
                self.runtime.start(full, service_id, revision_id, meta["template"])
        if waiting and not failure:
            service["reconciling"] = True
            return
        if not service.get("reconciling"):  # nothing asked for: keep serving what serves
            self._stop_unserved(name, service)
            return
        service.update(reconciling=False, observedGeneration=service["generation"], updateTime=now())
        latest = service.get("latestCreatedRevision", "")
        if failure:
            service["terminalCondition"] = condition(
                "Ready", "CONDITION_FAILED", failure, "ERROR", reason="REVISION_FAILED"
            )
            service["conditions"] = [
                condition("RoutesReady", "CONDITION_SUCCEEDED"),
                condition("ConfigurationsReady", "CONDITION_FAILED", failure, "ERROR"),
            ]
        else:
            if latest and self.store.meta.get(latest, {}).get("state") == READY:
                service["latestReadyRevision"] = latest
            statuses = self._statuses(name, service)
            if statuses != service.get("trafficStatuses"):  # else the same list stays (see codec)
                service["trafficStatuses"] = statuses
            service["terminalCondition"] = condition("Ready", "CONDITION_SUCCEEDED")
            service["conditions"] = [
                condition("RoutesReady", "CONDITION_SUCCEEDED"),
                condition("ConfigurationsReady", "CONDITION_SUCCEEDED"),
            ]
        public = service_wire(service)
        for op_name in self.store.meta.get(name, {}).pop("ops", []):
            op = self.store.operations.get(op_name)
            if op is not None and not op["done"]:
                finish_operation(op, public, ("FAILED_PRECONDITION", failure) if failure else None)
        self._stop_unserved(name, service)

    def _stop_unserved(self, name: str, service: dict[str, Any]) -> None:
        """Stop the containers of revisions that serve no traffic and hold no tag."""
        if self.runtime is None:
            return
        serving = {s["revision"] for s in service.get("trafficStatuses", [])}
        for revision in self.store.revisions_of(name):
            short = revision["name"].rsplit("/", 1)[1]
            if short not in serving and self.runtime.is_running(revision["name"]):
                self.runtime.stop(revision["name"])

    def _needed(self, service: dict[str, Any]) -> set[str]:
        """Revision ids that must be running: those serving now, the spec's targets, a starting latest."""
        name = service["name"]
        needed = {s["revision"] for s in service.get("trafficStatuses", [])}
        if service.get("reconciling"):
            needed |= self._targets(service)
            latest = service.get("latestCreatedRevision", "")
            if latest and self.store.meta.get(latest, {}).get("state") == STARTING:
                needed.add(latest.rsplit("/", 1)[1])
        return {r for r in needed if f"{name}/revisions/{r}" in self.store.revisions}

    def _targets(self, service: dict[str, Any]) -> set[str]:
        latest = service.get("latestCreatedRevision", "").rsplit("/", 1)[-1]
        return {t.get("revision") or latest for t in service["traffic"]}

    def _referenced(self, service: dict[str, Any]) -> set[str]:
        return self._targets(service) | {s["revision"] for s in service.get("trafficStatuses", [])}

    def _statuses(self, name: str, service: dict[str, Any]) -> list[dict[str, Any]]:
        latest = service.get("latestCreatedRevision", "").rsplit("/", 1)[-1]
        made = self.statuses_made.get(name)
        if made is not None and made[0] is service["traffic"] and made[1] == latest:
            return made[2]  # lists are replaced, never edited: the same list gives the same statuses
        statuses = []
        for target in service["traffic"]:
            status = dict(target, revision=target.get("revision") or latest)
            if target.get("tag"):
                status["uri"] = self.naming.tag_uri(name, target["tag"])
            statuses.append(status)
        self.statuses_made[name] = (service["traffic"], latest, statuses)
        return statuses
