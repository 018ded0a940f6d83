"""Cloud Run's API behaviour: services, immutable revisions, traffic, etags, revisions' deletion.

A write is checked and stored at once; its Operation stays `done: false` until reconciliation
(reconcile.py) has the revisions it needs running.
"""

from __future__ import annotations

import logging
import random
import string
import uuid
from typing import Any

from faye_plugin.emulator import validation as v
from faye_plugin.emulator.limits import (
    Limits,
    check_metadata_limits,
    collect_tags,
    prunable_revisions,
    stamp_tags,
)
from faye_plugin.emulator.reconcile import STARTING, Reconciler, RevisionRuntime
from faye_plugin.emulator.resources import (
    REVISION_TYPE,
    SERVICE_TYPE,
    Naming,
    condition,
    finish_operation,
    new_etag,
    now,
    operation,
    revision_wire,
    same_etag,
    service_wire,
    split_service,
)
from faye_plugin.emulator.store import Store
from faye_plugin.exceptions import CloudRunApiError

log = logging.getLogger(__name__)
COPIED_TEMPLATE_FIELDS = tuple(
    f.json_name for f in v.REVISION_MSG.DESCRIPTOR.fields if f.json_name not in ("labels", "annotations")
)


def not_found(kind: str, resource_id: str, location: str, project: str) -> CloudRunApiError:
    """Build Cloud Run's 404 for a missing service or revision."""
    return CloudRunApiError(
        404,
        "NOT_FOUND",
        f"Resource '{resource_id}' of kind '{kind}' in region "
        f"'{location}' in project '{project}' does not exist.",
    )


class Engine(Reconciler):
    """The emulated API, one method per RPC; every method holds the store's lock."""

    def __init__(self, store: Store, naming: Naming, limits: Limits | None = None) -> None:
        self.store = store
        self.naming = naming
        self.limits = limits or Limits()
        self.runtime: RevisionRuntime | None = None
        self.statuses_made: dict[str, tuple[list[dict[str, Any]], str, list[dict[str, Any]]]] = {}

    # -- services ----------------------------------------------------------------------------------------

    def create_service(self, parent: str, service_id: str, body: Any, validate_only: bool) -> dict[str, Any]:
        """CreateService: refuse an existing name, else store the service and its first revision."""
        v.check_service_id(service_id)
        spec = v.strip_output_only(v.to_message_dict(body, v.SERVICE_MSG, "service"))
        name = f"{parent}/services/{service_id}"
        with self.store.lock:
            if name in self.store.services:
                raise CloudRunApiError(409, "ALREADY_EXISTS", f"Resource '{service_id}' already exists.")
            return self._write(name, None, spec, validate_only, "CreateServiceRequest")

    def get_service(self, name: str) -> dict[str, Any]:
        """GetService."""
        with self.store.lock:
            return service_wire(self._service(name))

    def list_services(self, parent: str, page_size: int, page_token: str) -> dict[str, Any]:
        """ListServices, ordered by name."""
        with self.store.lock:
            found = [
                service_wire(s)
                for n, s in sorted(self.store.services.items())
                if n.startswith(parent + "/services/")
            ]
        page, token = paginate(found, page_size, page_token)
        return {"services": page, "nextPageToken": token} if token else {"services": page}

    def update_service(
        self, name: str, body: Any, mask: str | None, allow_missing: bool, validate_only: bool
    ) -> dict[str, Any]:
        """UpdateService (PATCH): apply the masked fields; create when absent and allowMissing."""
        split_service(name)
        request = v.to_message_dict(body, v.SERVICE_MSG, "service")
        paths = v.check_update_mask(mask) if mask else None
        with self.store.lock:
            current = self.store.services.get(name)
            if current is None:
                if not allow_missing:
                    raise not_found("SERVICE", *self._ids(name))
                v.check_service_id(split_service(name)[2])
                return self._write(
                    name, None, v.strip_output_only(request), validate_only, "UpdateServiceRequest"
                )
            given_etag = request.get("etag", "")
            if given_etag and not same_etag(given_etag, current["etag"]):
                raise stale_etag("service", split_service(name)[2])
            spec = v.strip_output_only(current)  # a new dict; set_path copies what it changes below it
            if paths is None:
                spec = v.strip_output_only(request)
            else:
                for path in paths:
                    set_path(spec, path, get_path(request, path))
            return self._write(name, current, spec, validate_only, "UpdateServiceRequest")

    def delete_service(self, name: str, etag: str, validate_only: bool) -> dict[str, Any]:
        """DeleteService: remove the service and its revisions; stop their containers."""
        with self.store.lock:
            current = self._service(name)
            if etag and not same_etag(etag, current["etag"]):
                raise stale_etag("service", split_service(name)[2])
            gone = dict(current, deleteTime=now(), reconciling=False)
            op = operation(self._op_name(name), service_wire(gone), SERVICE_TYPE, done=True)
            if validate_only:
                return op
            for revision in self.store.revisions_of(name):
                self._drop_revision(revision["name"])
            for op_name in self.store.meta.pop(name, {}).get("ops", []):
                if op_name in self.store.operations and not self.store.operations[op_name]["done"]:
                    finish_operation(
                        self.store.operations[op_name],
                        None,
                        ("FAILED_PRECONDITION", "The service was deleted."),
                    )
            del self.store.services[name]
            self.store.counters.pop(name, None)
            self.statuses_made.pop(name, None)
            self.store.operations[op["name"]] = op
            self.store.save()
            return op

    # -- revisions ---------------------------------------------------------------------------------------

    def get_revision(self, name: str) -> dict[str, Any]:
        """GetRevision."""
        with self.store.lock:
            return revision_wire(self._revision(name))

    def list_revisions(self, parent: str, page_size: int, page_token: str) -> dict[str, Any]:
        """ListRevisions of one service (or `-` for all services), newest first."""
        project, location, service_id = split_service(parent)
        with self.store.lock:
            if service_id != "-":
                self._service(parent)
            prefix = f"projects/{project}/locations/{location}/services/"
            found = [
                r
                for n, r in self.store.revisions.items()
                if n.startswith(prefix) and (service_id == "-" or r["service"] == parent)
            ]
            found = [revision_wire(r) for r in sorted(found, key=lambda r: r["createTime"], reverse=True)]
        page, token = paginate(found, page_size, page_token)
        return {"revisions": page, "nextPageToken": token} if token else {"revisions": page}

    def delete_revision(self, name: str, etag: str, validate_only: bool) -> dict[str, Any]:
        """DeleteRevision: only revisions that serve no traffic, hold no tag and are not the latest."""
        with self.store.lock:
            revision = self._revision(name)
            if etag and not same_etag(etag, revision["etag"]):
                raise stale_etag("revision", name.rsplit("/", 1)[1])
            service = self.store.services[revision["service"]]
            revision_id = name.rsplit("/", 1)[1]
            if revision_id in self._referenced(service) or name == service.get("latestCreatedRevision"):
                raise CloudRunApiError(
                    400,
                    "FAILED_PRECONDITION",
                    f"Revision '{revision_id}' cannot be deleted: it is the latest "
                    "revision or is referenced by the service's traffic or tags. Only "
                    "retired revisions can be deleted.",
                )
            op = operation(
                self._op_name(revision["service"]),
                revision_wire(dict(revision, deleteTime=now())),
                REVISION_TYPE,
                done=True,
            )
            if not validate_only:
                self._drop_revision(name)
                self.store.operations[op["name"]] = op
                self.store.save()
            return op

    # -- operations --------------------------------------------------------------------------------------

    def get_operation(self, name: str) -> dict[str, Any]:
        """GetOperation."""
        with self.store.lock:
            op = self.store.operations.get(name)
            if op is None:
                raise CloudRunApiError(404, "NOT_FOUND", f"Operation '{name}' not found.")
            return dict(op)

    def list_operations(self, parent: str, page_size: int, page_token: str) -> dict[str, Any]:
        """ListOperations."""
        with self.store.lock:
            prefix = parent + "/operations/"
            found = [dict(o) for n, o in self.store.operations.items() if n.startswith(prefix)]
        page, token = paginate(found, page_size, page_token)
        return {"operations": page, "nextPageToken": token} if token else {"operations": page}

    def delete_operation(self, name: str) -> dict[str, Any]:
        """DeleteOperation."""
        with self.store.lock:
            if self.store.operations.pop(name, None) is None:
                raise CloudRunApiError(404, "NOT_FOUND", f"Operation '{name}' not found.")
            self.store.save()
        return {}

    # -- front door --------------------------------------------------------------------------------------

    def route(self, project: str, location: str, service_id: str, tag: str) -> tuple[int | None, str]:
        """Return (port of the revision to serve, its id) for a front-door request; (None, why) if none."""
        name = f"projects/{project}/locations/{location}/services/{service_id}"
        with self.store.lock:
            service = self.store.services.get(name)
            if service is None:
                return None, f"no service '{service_id}'"
            statuses = service.get("trafficStatuses", [])
            if tag:
                picked = [s for s in statuses if s.get("tag") == tag]
                weights = [1] * len(picked)
            else:
                picked = [s for s in statuses if s.get("percent", 0) > 0]
                weights = [s["percent"] for s in picked]
            if not picked:
                return None, f"no revision serves {'tag ' + tag if tag else 'the service'}"
            revision_id = random.choices(picked, weights=weights)[0]["revision"]
            port = self.runtime.port_of(f"{name}/revisions/{revision_id}") if self.runtime else None
            return port, revision_id

    # -- writes ------------------------------------------------------------------------------------------

    def _write(
        self,
        name: str,
        current: dict[str, Any] | None,
        spec: dict[str, Any],
        validate_only: bool,
        request: str,
    ) -> dict[str, Any]:
        project, location, service_id = split_service(name)
        template = spec.get("template")
        if template is None:
            raise v.bad("service.template: Required field not set.")
        v.check_template(template)
        v.check_metadata(spec.get("labels", {}), spec.get("annotations", {}), "service")
        check_metadata_limits(spec, request, self.limits)
        known = {r["name"].rsplit("/", 1)[1] for r in self.store.revisions_of(name)}
        new_revision = ""
        if current is None or template != current["template"]:
            new_revision = template.get("revision", "")
            if new_revision:
                v.check_revision_id(new_revision, service_id)
                existing = self.store.meta.get(f"{name}/revisions/{new_revision}")
                if existing is not None:
                    if existing["template"] != template:
                        raise CloudRunApiError(
                            409,
                            "ALREADY_EXISTS",
                            f"Revision named '{new_revision}' with different configuration already exists.",
                        )
                    new_revision = ""
            else:
                counter = self.store.counters.get(name, 0) + 1
                suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=3))
                new_revision = f"{service_id}-{counter:05d}-{suffix}"
        traffic = v.normalise_traffic(spec.get("traffic", []))
        if current is not None and traffic == current["traffic"]:
            traffic = current["traffic"]  # accepted before, and the same list lets codec reuse its work
        else:
            v.check_traffic(traffic, service_id, known | ({new_revision} if new_revision else set()))
        stamp = now()
        ages = stamp_tags(traffic, self.store.meta.get(name, {}).get("tags", {}), stamp)
        before = {t.get("tag") for t in current["traffic"]} if current else set()
        traffic, deleted_tags = collect_tags(
            traffic,
            ages,
            set(ages) - before,
            others=self._region_tags(project, location, name),
            limit=self.limits.tags_per_region,
            field=f"{request}.service.traffic",
        )
        ages = {tag: age for tag, age in ages.items() if tag not in deleted_tags}
        service = dict(spec, traffic=traffic, name=name)
        if current is None:
            service.update(
                uid=str(uuid.uuid4()),
                generation="1",
                createTime=stamp,
                creator="emulator@local",
                observedGeneration="0",
                trafficStatuses=[],
            )
        else:
            unchanged = v.strip_output_only(current) == v.strip_output_only(service) and not new_revision
            for key in (
                "uid",
                "createTime",
                "creator",
                "latestReadyRevision",
                "latestCreatedRevision",
                "trafficStatuses",
                "observedGeneration",
                "generation",
                "etag",
            ):
                if key in current:
                    service[key] = current[key]
            if unchanged:
                return operation(self._op_name(name), service_wire(current), SERVICE_TYPE, done=True)
            service["generation"] = str(int(current["generation"]) + 1)
        service.update(
            updateTime=stamp,
            lastModifier="emulator@local",
            etag=new_etag(),
            reconciling=True,
            uri=self.naming.service_uri(name),
            urls=[self.naming.service_uri(name)],
            terminalCondition=condition("Ready", "CONDITION_RECONCILING"),
        )
        pruned: list[str] = []
        if new_revision:
            service["latestCreatedRevision"] = f"{name}/revisions/{new_revision}"
            # Kept: what the new spec routes or tags, what serves now, what is still starting.
            serving = {s["revision"] for s in (current or {}).get("trafficStatuses", [])}
            starting = {
                n.rsplit("/", 1)[1]
                for n, m in self.store.meta.items()
                if n.startswith(name + "/revisions/") and m.get("state") == STARTING
            }
            keep = self._targets(service) | serving | starting
            pruned = prunable_revisions(
                self.store.revisions_of(name),
                keep,
                self.limits.revisions_per_service,
                f"{request}.service.template",
            )
        public = service_wire(service)  # before anything is stored: a bad resource changes nothing
        if validate_only:
            return operation(self._op_name(name), public, SERVICE_TYPE, done=True)
        if deleted_tags:
            log.info(
                "tag limit of %s/%s reached: deleted the tags %s of %s",
                project,
                location,
                ", ".join(deleted_tags),
                service_id,
            )
        for full in pruned:
            log.info("revision limit of %s reached: deleted the unused revision %s", service_id, full)
            self._drop_revision(full)
        if new_revision:
            self.store.next_counter(name)
            self._add_revision(name, new_revision, dict(template, revision=new_revision), stamp)
        op = operation(self._op_name(name), public, SERVICE_TYPE, done=False)
        self.store.services[name] = service
        self.store.operations[op["name"]] = op
        self.store.meta.setdefault(name, {}).setdefault("ops", []).append(op["name"])
        self.store.meta[name]["tags"] = ages
        self._reconcile(name)
        self.store.save()
        return dict(self.store.operations[op["name"]])

    def _add_revision(
        self, service_name: str, revision_id: str, template: dict[str, Any], stamp: str
    ) -> None:
        full = f"{service_name}/revisions/{revision_id}"
        revision = {k: template[k] for k in COPIED_TEMPLATE_FIELDS if k in template}
        revision.update(
            name=full,
            uid=str(uuid.uuid4()),
            generation="1",
            labels=template.get("labels", {}),
            annotations=template.get("annotations", {}),
            createTime=stamp,
            updateTime=stamp,
            service=service_name,
            reconciling=True,
            observedGeneration="1",
            etag=new_etag(),
            conditions=[condition("Ready", "CONDITION_RECONCILING")],
            creator="emulator@local",
        )
        self.store.revisions[full] = revision
        self.store.meta[full] = {"state": STARTING, "template": template}

    def _drop_revision(self, full: str) -> None:
        self.store.revisions.pop(full, None)
        self.store.meta.pop(full, None)
        if self.runtime:
            self.runtime.stop(full)

    # -- helpers -----------------------------------------------------------------------------------------

    def _region_tags(self, project: str, location: str, but: str) -> int:
        """How many tags the services of one project and region hold, not counting service `but`."""
        prefix = f"projects/{project}/locations/{location}/services/"
        return sum(
            1
            for n, s in self.store.services.items()
            if n.startswith(prefix) and n != but
            for t in s.get("traffic", [])
            if t.get("tag")
        )

    def _service(self, name: str) -> dict[str, Any]:
        service = self.store.services.get(name)
        if service is None:
            raise not_found("SERVICE", *self._ids(name))
        return service

    def _revision(self, name: str) -> dict[str, Any]:
        revision = self.store.revisions.get(name)
        if revision is None:
            service_name, _, revision_id = name.partition("/revisions/")
            project, location, _ = split_service(service_name)
            raise not_found("REVISION", revision_id, location, project)
        return revision

    @staticmethod
    def _ids(name: str) -> tuple[str, str, str]:
        project, location, service_id = split_service(name)
        return service_id, location, project

    @staticmethod
    def _op_name(resource_name: str) -> str:
        project, location, _ = split_service(resource_name)
        return f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}"


def stale_etag(kind: str, resource_id: str) -> CloudRunApiError:
    """Build the refusal of a write whose etag is not the resource's current one."""
    return CloudRunApiError(
        409,
        "ABORTED",
        f"The etag of the {kind} '{resource_id}' in the request does not "
        "match its current etag: it was changed since it was read. Read "
        "it again and retry.",
    )


def paginate(
    items: list[dict[str, Any]], page_size: int, page_token: str
) -> tuple[list[dict[str, Any]], str]:
    """Cut a page out of `items`; the token is the next offset."""
    try:
        start = int(page_token) if page_token else 0
    except ValueError as err:
        raise v.bad(f"Invalid page token '{page_token}'.") from err
    if page_size < 0 or start < 0:
        raise v.bad("page_size and page_token must not be negative.")
    size = page_size or len(items) or 1
    end = start + size
    return items[start:end], str(end) if end < len(items) else ""


def get_path(data: dict[str, Any], path: str) -> Any:
    """Read a dotted path of a dict (None when absent)."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Write (or, for None, clear) a dotted path of a dict, copying the dicts on the way (they may be
    shared with the stored resource, which must not change)."""
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part, {})
        if not isinstance(child, dict):
            raise v.bad(f"Invalid update mask path '{path}'.")
        node[part] = child = dict(child)
        node = child
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
