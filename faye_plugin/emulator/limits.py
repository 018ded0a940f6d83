"""Cloud Run's resource limits and the clean-ups it does at them; metadata rules; `error.details`.

* 2,000 revision tags per project and region: when a write would go past it, the tags of *that*
  service that have no traffic percentage are deleted, oldest first, until the region is back at the
  limit (https://cloud.google.com/run/quotas, "Revision tag").
* 1,000 revisions per service: when a new revision would go past it, the oldest revisions that serve
  nothing are deleted (same page, "Revision"; https://cloud.google.com/run/docs/managing/revisions).
* Annotations follow Kubernetes' rules (the v2 protos: "This field follows Kubernetes annotations'
  namespacing, limits, and rules"): each key a qualified name, all keys and values together at most
  256 KiB. Labels follow Google Cloud's label rules, at most 64 per resource.

Refusals use the shape real v2 errors have: "Violation in <Request>.<field>: <what>" with a
`google.rpc.BadRequest` field violation in `error.details`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faye_plugin.exceptions import CloudRunApiError

BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
TOTAL_ANNOTATION_BYTES = 256 * 1024  # apimachinery TotalAnnotationSizeLimitB
MAX_LABELS = 64

# Kubernetes apimachinery pkg/util/validation: qualified names and DNS-1123 subdomains.
QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
SUBDOMAIN_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
QNAME_RE = re.compile(f"^{QNAME_FMT}$")
SUBDOMAIN_RE = re.compile(f"^{SUBDOMAIN_FMT}$")


@dataclass(frozen=True)
class Limits:
    """The numbers the emulator enforces (Cloud Run's by default; smaller ones make tests fast)."""

    tags_per_region: int = 2000
    revisions_per_service: int = 1000
    annotation_bytes: int = TOTAL_ANNOTATION_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """Read FAYE_EMULATOR_MAX_TAGS, FAYE_EMULATOR_MAX_REVISIONS, FAYE_EMULATOR_MAX_ANNOTATION_BYTES."""
        env = os.environ if env is None else env
        values = {}
        for field, var in (
            ("tags_per_region", "FAYE_EMULATOR_MAX_TAGS"),
            ("revisions_per_service", "FAYE_EMULATOR_MAX_REVISIONS"),
            ("annotation_bytes", "FAYE_EMULATOR_MAX_ANNOTATION_BYTES"),
        ):
            raw = env.get(var, "").strip()
            if raw:
                if not raw.isdigit() or int(raw) < 1:
                    raise ValueError(f"{var}={raw!r} must be a positive integer")
                values[field] = int(raw)
        return cls(**values)


def bad_request(field: str, description: str) -> dict[str, Any]:
    """A `google.rpc.BadRequest` detail with one field violation (JSON form)."""
    return {"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": field, "description": description}]}


def error_info(reason: str, metadata: dict[str, str]) -> dict[str, Any]:
    """A `google.rpc.ErrorInfo` detail of run.googleapis.com (JSON form)."""
    return {"@type": ERROR_INFO_TYPE, "reason": reason, "domain": "googleapis.com", "metadata": metadata}


def violation(field: str, description: str, status: str = "INVALID_ARGUMENT") -> CloudRunApiError:
    """Cloud Run v2's refusal of one field: "Violation in <field>: <description>" + BadRequest."""
    where = f"Violation in {field}"
    return CloudRunApiError(400, status, f"{where}: {description}", details=[bad_request(where, description)])


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """apimachinery's RegexError wording (its double space before "or" included)."""
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def qualified_name_errors(key: str) -> list[str]:
    """What Kubernetes' IsQualifiedName says about an annotation key (empty when it is fine)."""
    parts = key.split("/")
    errors: list[str] = []
    if len(parts) > 2:
        return ["a qualified name " + _regex_error(QNAME_MSG, QNAME_FMT, "MyName", "my.name", "123-abc")]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errors.append("prefix part must be no more than 253 characters")
            if not SUBDOMAIN_RE.match(prefix):
                errors.append("prefix part " + _regex_error(SUBDOMAIN_MSG, SUBDOMAIN_FMT, "example.com"))
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if not QNAME_RE.match(name):
        errors.append("name part " + _regex_error(QNAME_MSG, QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errors


def check_annotations(annotations: dict[str, str], field: str, limit: int) -> None:
    """Refuse keys that are not qualified names and annotations over `limit` bytes in all (keys + values)."""
    for key in annotations:
        errors = qualified_name_errors(key.lower())  # apimachinery lower-cases keys first
        if errors:
            raise violation(field, f'Invalid value: "{key}": {errors[0]}')
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > limit:
        raise violation(field, f"Too long: must have at most {limit} bytes")


def check_label_count(labels: dict[str, str], field: str) -> None:
    """Refuse more labels than Google Cloud allows on one resource."""
    if len(labels) > MAX_LABELS:
        raise violation(field, f"Too many labels: {len(labels)}; a resource can have at most {MAX_LABELS}.")


def check_metadata_limits(spec: dict[str, Any], request: str, limits: Limits) -> None:
    """The limit checks of one written service spec (service and template metadata)."""
    template = spec.get("template", {})
    for where, node in ((f"{request}.service", spec), (f"{request}.service.template", template)):
        check_annotations(node.get("annotations", {}), f"{where}.annotations", limits.annotation_bytes)
        check_label_count(node.get("labels", {}), f"{where}.labels")


# -- tags ---------------------------------------------------------------------------------------------


def stamp_tags(
    traffic: list[dict[str, Any]], known: dict[str, list[str]], stamp: str
) -> dict[str, list[str]]:
    """Return {tag: [revision, since]}: a tag keeps its age while it stays on the same revision."""
    result: dict[str, list[str]] = {}
    for index, target in enumerate(traffic):
        tag = target.get("tag")
        if not tag:
            continue
        before = known.get(tag)
        revision = target.get("revision", "")
        result[tag] = before if before and before[0] == revision else [revision, f"{stamp}#{index:05d}"]
    return result


def collect_tags(
    traffic: list[dict[str, Any]],
    ages: dict[str, list[str]],
    added: set[str],
    *,
    others: int,
    limit: int,
    field: str,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Apply the region's tag limit to a write that adds tags `added`; return (traffic, deleted tags).

    `others` is how many tags the region's other services hold. Over the limit, this service's tags
    without a traffic percentage go, oldest first (never one this write adds).
    """
    mine = [t for t in traffic if t.get("tag")]
    excess = others + len(mine) - limit
    if excess <= 0 or not added:
        return traffic, []
    candidates = sorted(
        (t for t in mine if not t.get("percent") and t["tag"] not in added),
        key=lambda t: ages.get(t["tag"], ["", ""])[1],
    )
    if len(candidates) < excess:
        raise violation(
            field,
            f"Revision tag limit reached: the project and region already have {others} tags on other "
            f"services and this service has no older tags without a traffic percentage to delete (at most "
            f"{limit} tags per project and region).",
            status="FAILED_PRECONDITION",
        )
    gone = {t["tag"] for t in candidates[:excess]}
    kept = [t for t in traffic if t.get("tag") not in gone]
    return kept, sorted(gone, key=lambda tag: ages.get(tag, ["", ""])[1])


def prunable_revisions(revisions: list[dict[str, Any]], keep: set[str], limit: int, field: str) -> list[str]:
    """Full names of the oldest revisions to delete so that one more fits in `limit` (none needed: [])."""
    excess = len(revisions) + 1 - limit
    if excess <= 0:
        return []
    unused = [r["name"] for r in revisions if r["name"].rsplit("/", 1)[1] not in keep]
    if len(unused) < excess:
        raise violation(
            field,
            f"Revision limit reached: the service has {len(revisions)} revisions, at most {limit} are "
            "allowed, and none can be deleted to make room: each serves traffic or holds a tag.",
            status="FAILED_PRECONDITION",
        )
    return unused[:excess]
