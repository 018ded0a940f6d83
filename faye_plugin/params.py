"""The request schema shared by faye_deploy, faye_build, faye_test and the ``faye`` CLI.

Airflow validates the Params' JSON schema when a run is triggered (HTTP 400 naming the first bad
field, and no run is created). ``validate_request`` checks the same rules plus unknown keys and
reports every problem at once, for the CLI and for the first task of each DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema

from faye_plugin.exceptions import InvalidRequestError

MAX_TTL_HOURS = 24 * 30
# Beyond int32 a PR number passed the schema and then failed the first task: refuse it at trigger time.
MAX_PR = 2**31 - 1

SCHEMAS: dict[str, dict[str, Any]] = {
    "service": {
        "type": "string",
        "pattern": "^[a-z][a-z0-9-]{0,48}$",
        "description": "A service name from the catalogue.",
    },
    "pr": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_PR,
        "description": "The pull request number.",
    },
    "git_sha": {
        "type": "string",
        "pattern": "^[0-9a-f]{7,40}$",
        "description": "The commit to preview: 7 to 40 lowercase hex characters (prefer the full sha).",
    },
    "slot": {
        "type": ["null", "string"],
        "pattern": "^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$",
        "description": "A slot of the service; empty: the PR's current slot, else a free one.",
    },
    "ttl_hours": {
        "type": ["null", "integer"],
        "minimum": 1,
        "maximum": MAX_TTL_HOURS,
        "description": "Hours the preview lives after this deploy; empty: the catalogue's default.",
    },
    "force_build": {"type": "boolean", "description": "Build the image even if the registry has it."},
    "priority": {
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
        "description": "Queue priority for test servers (higher first), e.g. 50 for a release candidate.",
    },
}
DEFAULTS: dict[str, Any] = {"slot": None, "ttl_hours": None, "force_build": False, "priority": 0}
REQUIRED = ("service", "pr", "git_sha")


def dag_params() -> dict[str, Any]:
    """Return the ``params`` of the request DAGs (Param objects built from SCHEMAS)."""
    from airflow.sdk import Param

    params: dict[str, Any] = {}
    for name, spec in SCHEMAS.items():
        schema = dict(spec)
        description = schema.pop("description")
        if name in DEFAULTS:
            params[name] = Param(DEFAULTS[name], description=description, **schema)
        else:
            params[name] = Param(description=description, **schema)
    return params


@dataclass(frozen=True)
class PreviewRequest:
    """One validated request: preview ``git_sha`` of ``service`` for pull request ``pr``."""

    service: str
    pr: int
    git_sha: str
    slot: str | None = None
    ttl_hours: int | None = None
    force_build: bool = False
    priority: int = 0

    @property
    def tag(self) -> str:
        """The Cloud Run revision tag of this PR's preview."""
        return f"pr-{self.pr}"


def validate_request(conf: dict[str, Any]) -> PreviewRequest:
    """Validate a conf; raise InvalidRequestError listing every bad or unknown field at once."""
    problems: list[str] = []
    unknown = sorted(set(conf) - set(SCHEMAS))
    if unknown:
        problems.append(f"unknown field(s): {', '.join(unknown)} (allowed: {', '.join(SCHEMAS)})")
    for name in REQUIRED:
        if conf.get(name) is None:
            problems.append(f"{name}: required")
    for name, schema in SCHEMAS.items():
        if conf.get(name) is None:
            continue
        check = {k: v for k, v in schema.items() if k != "description"}
        try:
            jsonschema.validate(conf[name], check)
        except jsonschema.ValidationError as err:
            problems.append(f"{name}: {err.message}")
    if problems:
        raise InvalidRequestError("invalid request: " + "; ".join(problems))
    return PreviewRequest(**{**DEFAULTS, **{k: v for k, v in conf.items() if v is not None}})
