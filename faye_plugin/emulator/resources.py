"""Building blocks of the emulated resources: names, URLs, conditions, etags, LRO Operations."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import os
import re
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from faye_plugin.emulator import codec
from faye_plugin.emulator.validation import REVISION_MSG, SERVICE_MSG, bad

SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
REVISION_TYPE = "type.googleapis.com/google.cloud.run.v2.Revision"
SEGMENT = r"[^/:]+"
SERVICE_NAME_RE = re.compile(rf"^projects/({SEGMENT})/locations/({SEGMENT})/services/({SEGMENT})$")
FRONT_DOOR_SUFFIX = ".run.localhost"
GRPC_CODES = {"FAILED_PRECONDITION": 9, "INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "INTERNAL": 13}


@dataclass(frozen=True)
class Naming:
    """How hostnames and URLs are formed for this emulator (one port serves API and front door)."""

    port: int
    project: str
    region: str

    def service_host(self, project: str, location: str, service_id: str) -> str:
        """Return `SERVICE.run.localhost` (default project and region), else `SERVICE.REGION.PROJECT...`."""
        if (project, location) == (self.project, self.region):
            return f"{service_id}{FRONT_DOOR_SUFFIX}"
        return f"{service_id}.{location}.{project}{FRONT_DOOR_SUFFIX}"

    def service_uri(self, service_name: str) -> str:
        """Return the service's URL."""
        project, location, service_id = split_service(service_name)
        return f"http://{self.service_host(project, location, service_id)}:{self.port}"

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - a handful of Naming objects, never freed anyway
    def tag_uri(self, service_name: str, tag: str) -> str:
        """Return a tag's URL: `TAG---` in front of the service host, as Cloud Run does."""
        project, location, service_id = split_service(service_name)
        return f"http://{tag}---{self.service_host(project, location, service_id)}:{self.port}"

    def parse_host(self, host: str) -> tuple[str, str, str, str] | None:
        """Return (project, location, service id, tag or "") of a front-door Host header, else None."""
        name = host.rsplit(":", 1)[0] if ":" in host else host
        name = name.lower().rstrip(".")
        if not name.endswith(FRONT_DOOR_SUFFIX):
            return None
        labels = name[: -len(FRONT_DOOR_SUFFIX)].split(".")
        if len(labels) == 1:
            project, location = self.project, self.region
        elif len(labels) == 3:
            location, project = labels[1], labels[2]
        else:
            return None
        tag, _, service_id = labels[0].rpartition("---")
        return project, location, service_id, tag


def split_service(name: str) -> tuple[str, str, str]:
    """Split a full service name into (project, location, service id)."""
    match = SERVICE_NAME_RE.match(name)
    if not match:
        raise bad(f"Invalid resource name '{name}'.")
    return match.group(1), match.group(2), match.group(3)


def now() -> str:
    """Return the current time as RFC 3339 (UTC, microseconds)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_etag() -> str:
    """Return a fresh opaque etag (quoted, like Cloud Run's)."""
    return '"' + base64.urlsafe_b64encode(os.urandom(12)).decode().rstrip("=") + '"'


def same_etag(given: str, current: str) -> bool:
    """Compare etags ignoring quotes and a weak prefix."""

    def bare(value: str) -> str:
        return value.removeprefix("W/").strip('"')

    return bare(given) == bare(current)


def condition(
    kind: str,
    state: str,
    message: str = "",
    severity: str = "",
    *,
    reason: str = "",
    revision_reason: str = "",
) -> dict[str, Any]:
    """Build one Condition."""
    result: dict[str, Any] = {"type": kind, "state": state, "lastTransitionTime": now()}
    if message:
        result["message"] = message
    if severity:
        result["severity"] = severity
    if reason:
        result["reason"] = reason
    elif revision_reason:
        result["revisionReason"] = revision_reason
    return result


def wire(resource: dict[str, Any], message_cls: type[Message]) -> dict[str, Any]:
    """Round-trip a resource through its proto so nothing the client's strict parser lacks goes out
    (read-only: its traffic items are shared, see codec)."""
    return codec.normalise(resource, message_cls)


def service_wire(service: dict[str, Any]) -> dict[str, Any]:
    """Return a Service as the API answers it."""
    return wire(service, SERVICE_MSG)


def revision_wire(revision: dict[str, Any]) -> dict[str, Any]:
    """Return a Revision as the API answers it."""
    return wire(revision, REVISION_MSG)


def operation(name: str, resource: dict[str, Any], type_url: str, done: bool) -> dict[str, Any]:
    """Build a google.longrunning.Operation whose metadata (and response when done) is `resource`."""
    packed = {"@type": type_url, **resource}
    op: dict[str, Any] = {"name": name, "metadata": packed, "done": done}
    if done:
        op["response"] = packed
    return op


def finish_operation(
    op: dict[str, Any], resource: dict[str, Any] | None, error: tuple[str, str] | None
) -> None:
    """Complete an Operation with the resource, or with (status name, message) as its error."""
    type_url = op["metadata"]["@type"]
    op["done"] = True
    if resource is not None:
        op["metadata"] = {"@type": type_url, **resource}
    if error is not None:
        op.pop("response", None)
        op["error"] = {"code": GRPC_CODES.get(error[0], 13), "message": error[1]}
    else:
        op["response"] = op["metadata"]
