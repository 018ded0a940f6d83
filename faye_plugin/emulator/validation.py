"""Request checks with Cloud Run's own rules and messages: JSON bodies, names, labels, traffic, masks.

Bodies are parsed with the real protobuf descriptors of `google.cloud.run.v2`, so an unknown field or a
value of the wrong type is refused exactly where the real front end refuses it, and everything the
emulator stores and answers is a valid proto message.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from faye_plugin.emulator import codec
from faye_plugin.exceptions import CloudRunApiError

SERVICE_ID_RE = re.compile(r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
REVISION_ID_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
TAG_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
RESERVED_NAMESPACES = (
    "run.googleapis.com",
    "cloud.googleapis.com",
    "serving.knative.dev",
    "autoscaling.knative.dev",
)
RESERVED_ENV = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")
MAX_TAG_AND_SERVICE = 46
SERVICE_OUTPUT_ONLY = (
    "uid",
    "generation",
    "createTime",
    "updateTime",
    "deleteTime",
    "expireTime",
    "creator",
    "lastModifier",
    "urls",
    "observedGeneration",
    "terminalCondition",
    "conditions",
    "latestReadyRevision",
    "latestCreatedRevision",
    "trafficStatuses",
    "uri",
    "satisfiesPzs",
    "reconciling",
    "etag",
)
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"

SERVICE_MSG = codec.SERVICE_MSG
REVISION_MSG = codec.REVISION_MSG


def bad(message: str, status: str = "INVALID_ARGUMENT", http_status: int = 400) -> CloudRunApiError:
    """Build the error Cloud Run answers for a refused request (400 INVALID_ARGUMENT by default)."""
    return CloudRunApiError(http_status, status, message)


def parse_json_body(raw: bytes) -> Any:
    """Decode a request body; refuse what is not JSON like Google's front end does."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "Too deeply nested" if isinstance(err, RecursionError) else str(err)
        raise bad(f"Invalid JSON payload received. {reason}.") from err


def to_message_dict(body: Any, message_cls: type[Message], what: str) -> dict[str, Any]:
    """Parse `body` strictly as `message_cls` and return it normalised (camelCase, enum names)."""
    if not isinstance(body, dict):
        raise bad(f"Invalid JSON payload received. Expected an object at '{what}'.")
    try:
        return codec.normalise(body, message_cls)
    except (json_format.ParseError, RecursionError) as err:
        raise bad(_parse_error_message(str(err) or "Too deeply nested", what)) from err


def _parse_error_message(text: str, what: str) -> str:
    """Turn protobuf's parse error into the text Google's JSON front end uses."""
    unknown = re.search(r'has no field named "([^"]+)" at "([^"]*)"', text)
    if unknown:
        path = unknown.group(2).split(".", 1)
        where = what + ("." + path[1] if len(path) > 1 else "")
        field = unknown.group(1)
        return f"Invalid JSON payload received. Unknown name \"{field}\" at '{where}': Cannot find field."
    return f"Invalid JSON payload received. {text.splitlines()[0]}"


def check_service_id(service_id: str) -> None:
    """Refuse a service id Cloud Run refuses."""
    if not service_id:
        raise bad("service_id is required.")
    if not SERVICE_ID_RE.match(service_id):
        raise bad(
            f"Invalid value specified for service_id '{service_id}': only lowercase, digits, and "
            "hyphens; must begin with letter, and cannot end with hyphen; must be less than 50 "
            "characters."
        )


def check_revision_id(revision: str, service_id: str) -> None:
    """Refuse a template.revision Cloud Run refuses (it must also start with the service name)."""
    if not REVISION_ID_RE.match(revision):
        raise bad(
            f"Invalid value specified for template.revision '{revision}': only lowercase, digits, "
            "and hyphens; must begin with letter, and may not end with hyphen; must be less than "
            "64 characters."
        )
    if not revision.startswith(service_id + "-"):
        raise bad(f"template.revision '{revision}' must start with the service name '{service_id}-'.")


def check_metadata(labels: dict[str, str], annotations: dict[str, str], where: str) -> None:
    """Refuse labels that break GCP label rules and keys in the namespaces Cloud Run v2 reserves."""
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(key) or not LABEL_VALUE_RE.match(value):
            raise bad(
                f"Invalid label '{key}: {value}' in {where}.labels: keys must start with a lowercase "
                "letter; keys and values may contain only lowercase letters, digits, '_' and '-' "
                "and be at most 63 characters."
            )
    for kind, mapping in (("labels", labels), ("annotations", annotations)):
        for key in mapping:
            namespace = key.split("/", 1)[0] if "/" in key else ""
            if any(namespace == ns or namespace.endswith("." + ns) for ns in RESERVED_NAMESPACES):
                raise bad(
                    f"The key '{key}' in {where}.{kind} is not supported: Cloud Run API v2 does not "
                    f"support {kind} in the {namespace} namespace."
                )


def check_template(template: dict[str, Any]) -> None:
    """Refuse a revision template without a runnable first container or with reserved env names."""
    containers = template.get("containers", [])
    if not containers:
        raise bad("template.containers: at least one container is required.")
    for index, container in enumerate(containers):
        if not container.get("image"):
            raise bad(f"template.containers[{index}].image: Required field not set.")
        reserved = sorted({e.get("name", "") for e in container.get("env", [])} & set(RESERVED_ENV))
        if reserved:
            raise bad(
                f"template.containers[{index}].env: The following reserved env names were provided: "
                f"{', '.join(reserved)}. These values are automatically set by the system."
            )
    check_metadata(template.get("labels", {}), template.get("annotations", {}), "template")


def normalise_traffic(traffic: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill in Cloud Run's defaults: no traffic means 100% to LATEST; an untyped target is typed."""
    if not traffic:
        return [{"type": LATEST, "percent": 100}]
    result = []
    for given in traffic:
        target = dict(given)
        if target.get("type") in (None, "TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED"):
            target["type"] = REVISION if target.get("revision") else LATEST
        result.append(target)
    return result


def check_traffic(traffic: list[dict[str, Any]], service_id: str, known_revisions: set[str]) -> None:
    """Refuse a traffic split Cloud Run refuses: sums, tags, and revisions that do not exist."""
    total = 0
    tags: set[str] = set()
    for index, target in enumerate(traffic):
        percent = target.get("percent", 0)
        tag = target.get("tag", "")
        revision = target.get("revision", "")
        if not 0 <= percent <= 100:
            raise bad(f"traffic[{index}].percent: must be between 0 and 100.")
        total += percent
        if target["type"] == LATEST and revision:
            raise bad(
                f"traffic[{index}]: revision must not be set when type is "
                "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST."
            )
        if target["type"] == REVISION and not revision:
            raise bad(
                f"traffic[{index}]: revision is required when type is "
                "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION."
            )
        if not percent and not tag:
            raise bad(f"traffic[{index}]: a traffic target needs a percent or a tag.")
        if revision and revision not in known_revisions:
            raise bad(
                f"Revision '{revision}' referenced in traffic[{index}] does not exist in service "
                f"'{service_id}'."
            )
        if tag:
            check_tag(tag, service_id)
            if tag in tags:
                raise bad(f"traffic tags must be unique: '{tag}' is used more than once.")
            tags.add(tag)
    if total != 100:
        raise bad(f"Traffic allocations must sum to 100, got {total}.")


@functools.lru_cache(maxsize=8192)  # a service's tags are checked on each of its writes
def check_tag(tag: str, service_id: str) -> None:
    """Refuse a tag Cloud Run refuses (DNS label, at least 3 characters, tag + service <= 46)."""
    if len(tag) < 3:
        raise bad(f"traffic tag '{tag}' is invalid: revision tags must contain at least three characters.")
    if not TAG_RE.match(tag):
        raise bad(
            f"traffic tag '{tag}' is invalid: tags must be lowercase letters, digits and hyphens, "
            "start with a letter and not end with a hyphen."
        )
    if len(tag) + len(service_id) > MAX_TAG_AND_SERVICE:
        raise bad(
            f"spec.traffic.tag: traffic tag '{tag}' and service name '{service_id}' together are too "
            "long. Combined traffic tag and service name cannot exceed 46 characters."
        )


def check_update_mask(mask: str) -> list[str]:
    """Split an updateMask into camelCase paths; refuse paths the Service message lacks or owns."""
    paths = []
    for raw in filter(None, (p.strip() for p in mask.split(","))):
        parts = raw.split(".")
        top = _field(SERVICE_MSG.DESCRIPTOR, parts[0])
        if top is None:
            raise bad(f"Invalid update mask path '{raw}': the field '{parts[0]}' does not exist in Service.")
        if top.json_name in SERVICE_OUTPUT_ONLY or top.json_name == "name":
            raise bad(f"Invalid update mask path '{raw}': the field '{parts[0]}' cannot be updated.")
        paths.append(".".join(_walk(raw, parts)))
    return paths


def _field(descriptor: Any, part: str) -> Any:
    """Find a field of a message descriptor by proto name or JSON name (None if there is none)."""
    for field in descriptor.fields:
        if part in (field.name, field.json_name):
            return field
    return None


def _walk(raw: str, parts: list[str]) -> list[str]:
    """Resolve a dotted mask path through the Service message; map keys pass through unchanged."""
    descriptor = SERVICE_MSG.DESCRIPTOR
    names: list[str] = []
    for index, part in enumerate(parts):
        field = _field(descriptor, part) if descriptor is not None else None
        if field is None:
            raise bad(f"Invalid update mask path '{raw}': '{part}' is not a field here.")
        names.append(field.json_name)
        last = index == len(parts) - 1
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            if len(parts) > index + 2:
                raise bad(f"Invalid update mask path '{raw}': a map key ends the path.")
            return names + parts[index + 1 :]
        if not last and (message is None or field.is_repeated):
            raise bad(f"Invalid update mask path '{raw}': '{part}' has no sub-fields that can be masked.")
        descriptor = message
    return names


def strip_output_only(service: dict[str, Any]) -> dict[str, Any]:
    """Drop the fields a client may send but the server owns (Cloud Run ignores them)."""
    return {k: v for k, v in service.items() if k not in SERVICE_OUTPUT_ONLY and k != "name"}
