"""The request schema of faye's DAGs: one schema, every door.

``SCHEMAS`` is the one description of a request (``service``, ``pr``, ``git_sha``, ...). It is read by

* the DAGs' Params (``dag_params``): the Airflow trigger form, and Airflow's own check when a run is
  created;
* the trigger gate (``faye_plugin/api/gate.py``), which refuses a bad trigger of any faye DAG through
  the REST API or the UI with HTTP 400 naming *every* problem (``conf_problems``), including names the
  catalogue does not know;
* the ``faye`` CLI and the first task of each DAG (``validate_request``).

Bounds are written as ``exclusiveMinimum`` / ``exclusiveMaximum`` on purpose: Airflow's trigger form
hands ``minimum`` / ``maximum`` to its number input, which clamps a value on blur (``pr = -1`` silently
became 1); with exclusive bounds the form sends what the person typed and the gate refuses it visibly.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from faye_plugin.exceptions import CatalogueError, InvalidRequestError
from faye_plugin.naming import DEFAULT_MAX_TTL_HOURS, tag_of

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

    from faye_plugin.catalogue import Catalogue

#: The DAGs whose conf is a preview request; ``faye_cleanup`` takes no conf at all.
REQUEST_DAGS = ("faye_deploy", "faye_build", "faye_test")
CLEANUP_DAG = "faye_cleanup"
#: The DAGs that act on a PR's existing preview: conf ``{service, pr}`` (rollback: and ``revision``).
TEARDOWN_DAG = "faye_teardown"
ROLLBACK_DAG = "faye_rollback"
FAYE_DAGS = (*REQUEST_DAGS, CLEANUP_DAG, TEARDOWN_DAG, ROLLBACK_DAG)

MAX_TTL_HOURS = DEFAULT_MAX_TTL_HOURS
# Beyond int32 a PR number passed the schema and then failed the first task: refuse it at trigger time.
MAX_PR = 2**31 - 1
#: How much of a bad value an error message repeats (a 1 MB string is named, not echoed).
SHOWN_CHARS = 60
TYPE_WORDS = {"integer": "a whole number", "string": "a string", "boolean": "true or false"}
PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,60}")
#: How many unknown keys are named one by one.
SHOWN_UNKNOWN = 20

SCHEMAS: dict[str, dict[str, Any]] = {
    "service": {
        "type": "string",
        "title": "Service",
        "pattern": "^[a-z][a-z0-9-]{0,48}$",
        "maxLength": 49,
        "description": "Which service to preview: a name from faye's service catalogue, e.g. hello.",
    },
    "pr": {
        "type": "integer",
        "title": "Pull request number",
        "exclusiveMinimum": 0,
        "exclusiveMaximum": MAX_PR + 1,
        "description": "The number of the pull request this preview is for (1 or more). "
        "Its preview is tagged pr-<number> on Cloud Run.",
    },
    "git_sha": {
        "type": "string",
        "title": "Commit (git sha)",
        "pattern": "^[0-9a-f]{7,40}$",
        "maxLength": 40,
        "description": "The commit to preview: its sha, 7 to 40 lowercase hex characters "
        "(the full 40 is best; a short one is resolved in the first step).",
    },
    "slot": {
        "type": ["null", "string"],
        "title": "Slot",
        "pattern": "^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$",
        "maxLength": 32,
        "description": "The stable hostname to serve the preview at (one of the service's slots). "
        "Leave empty: the slot the PR already holds, else a free one, else the oldest preview's.",
    },
    "ttl_hours": {
        "type": ["null", "integer"],
        "title": "Lifetime (hours)",
        "exclusiveMinimum": 0,
        "exclusiveMaximum": MAX_TTL_HOURS + 1,
        "description": "How many hours the preview lives after this deploy before faye_cleanup "
        "removes it (1 to the catalogue's max_ttl_hours). Leave empty: the catalogue's default.",
    },
    "force_build": {
        "type": ["null", "boolean"],
        "title": "Build even if the image exists",
        "description": "Build and push the image again although the registry already has it. "
        "Leave off: build only when needed.",
    },
    "priority": {
        "type": ["null", "integer"],
        "title": "Test queue priority",
        "exclusiveMinimum": -1,
        "exclusiveMaximum": 101,
        "description": "0 to 100: a higher number gets a test server first when tests queue "
        "(e.g. 50 for a release candidate). Leave empty: 0.",
    },
}
DEFAULTS: dict[str, Any] = {"slot": None, "ttl_hours": None, "force_build": False, "priority": 0}
REQUIRED = ("service", "pr", "git_sha")

#: ``faye_rollback``'s one optional field (``faye_teardown`` takes only ``service`` and ``pr``).
REVISION_SCHEMA: dict[str, Any] = {
    "type": ["null", "string"],
    "title": "Revision to roll back to",
    "pattern": "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$",
    "maxLength": 63,
    "description": "A ready revision of this PR's preview (as `faye previews` or Cloud Run names it). "
    "Leave empty: the PR's newest ready revision older than the one its tag serves now.",
}
#: The fields of the DAGs that act on a PR's existing preview, and their defaults.
PREVIEW_ACTION_FIELDS: dict[str, dict[str, Any]] = {
    TEARDOWN_DAG: {"service": SCHEMAS["service"], "pr": SCHEMAS["pr"]},
    ROLLBACK_DAG: {"service": SCHEMAS["service"], "pr": SCHEMAS["pr"], "revision": REVISION_SCHEMA},
}
ACTION_DEFAULTS: dict[str, Any] = {"revision": None}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a trigger: the field (``conf``, ``body``, or a conf key) and what."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def shown(value: Any) -> str:
    """``value`` as JSON, cut to SHOWN_CHARS characters (huge values are named, not echoed)."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 3]}... ({len(text)} chars)"


@cache
def _validator(name: str) -> Validator:
    """The JSON-schema validator of one field, with two corrections to Python's jsonschema:

    * ``integer`` excludes floats (5.0 would render ``pr-5.0``) as well as booleans;
    * ``pattern`` follows JSON Schema's (ECMA-262) ``$``, the end of the text: Python's ``$`` also
      matches before a final newline, so ``"abcdef1\\n"`` passed the sha pattern.
    """
    import jsonschema
    from jsonschema import Draft202012Validator

    def is_integer(checker: Any, instance: Any) -> bool:
        return isinstance(instance, int) and not isinstance(instance, bool)

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
        anchored = patrn[:-1] + r"\Z" if patrn.endswith("$") and not patrn.endswith(r"\$") else patrn
        if validator.is_type(instance, "string") and not re.search(anchored, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", is_integer)
    cls = jsonschema.validators.extend(
        Draft202012Validator, validators={"pattern": pattern}, type_checker=checker
    )
    schema = REVISION_SCHEMA if name == "revision" else SCHEMAS[name]
    spec = {k: v for k, v in schema.items() if k not in ("description", "title", "examples")}
    return cls(spec)


def _message(err: Any) -> str:
    """jsonschema's message with the value cut short and exclusive integer bounds said inclusively."""
    value = err.instance
    if err.validator == "exclusiveMinimum" and isinstance(value, int):
        return f"{shown(value)} is less than the minimum of {err.validator_value + 1}"
    if err.validator == "exclusiveMaximum" and isinstance(value, int):
        return f"{shown(value)} is greater than the maximum of {err.validator_value - 1}"
    if err.validator == "type":
        if isinstance(value, float) and value.is_integer():
            return f"{shown(value)} is not a whole number written without a decimal point"
        wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        kinds = " or ".join(TYPE_WORDS.get(str(t), str(t)) for t in wanted if t != "null")
        return f"{shown(value)} is not {kinds}" + (" (or empty)" if "null" in wanted else "")
    if err.validator == "maxLength":
        return f"{shown(value)} is longer than {err.validator_value} characters"
    return str(err.message).replace(repr(value), shown(value), 1)


def _unknown_keys(conf: Mapping[str, Any], allowed: tuple[str, ...]) -> list[Problem]:
    unknown = sorted(set(conf) - set(allowed))
    problems = []
    for key in unknown[:SHOWN_UNKNOWN]:
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(allowed) or 'none'}"
        name = key if PLAIN_KEY.fullmatch(key) else shown(key)
        problems.append(Problem(name, f"unknown field ({hint})"))
    if len(unknown) > SHOWN_UNKNOWN:
        problems.append(Problem("conf", f"and {len(unknown) - SHOWN_UNKNOWN} more unknown fields"))
    return problems


def _catalogue_problems(conf: Mapping[str, Any], catalogue: Catalogue, bad: set[str]) -> list[Problem]:
    """Names and bounds the catalogue decides (for the fields not already ``bad``): the service, the
    service's slot, ``max_ttl_hours``."""
    problems = []
    spec = None
    if "service" not in bad:
        try:
            spec = catalogue.service(conf["service"])
        except CatalogueError as err:
            problems.append(Problem("service", str(err)))
    if spec is not None and "slot" not in bad and conf.get("slot") is not None:
        try:
            spec.require_slot(conf["slot"])
        except CatalogueError as err:
            problems.append(Problem("slot", str(err)))
    ttl = conf.get("ttl_hours")
    if "ttl_hours" not in bad and ttl is not None and ttl > catalogue.defaults.max_ttl_hours:
        problems.append(
            Problem(
                "ttl_hours",
                f"{ttl} is greater than the catalogue's max_ttl_hours of {catalogue.defaults.max_ttl_hours}",
            )
        )
    return problems


def request_problems(conf: Any, catalogue: Catalogue | None = None) -> list[Problem]:
    """Every problem of a request conf at once (empty: valid); with ``catalogue``, its names too."""
    if not isinstance(conf, Mapping):
        return [Problem("conf", f"must be a JSON object, got {_json_type(conf)}")]
    problems = _unknown_keys(conf, tuple(SCHEMAS))
    bad: set[str] = set()
    for name in SCHEMAS:
        value = conf.get(name)
        if value is None:
            if name in REQUIRED:
                problems.append(Problem(name, "required"))
                bad.add(name)
            continue
        for err in _validator(name).iter_errors(value):
            problems.append(Problem(name, _message(err)))
            bad.add(name)
    if catalogue is not None:
        problems.extend(_catalogue_problems(conf, catalogue, bad))
    return problems


def action_problems(dag_id: str, conf: Any, catalogue: Catalogue | None = None) -> list[Problem]:
    """Every problem of the conf of ``faye_teardown`` / ``faye_rollback`` (empty: valid)."""
    if not isinstance(conf, Mapping):
        return [Problem("conf", f"must be a JSON object, got {_json_type(conf)}")]
    fields = PREVIEW_ACTION_FIELDS[dag_id]
    problems = _unknown_keys(conf, tuple(fields))
    bad: set[str] = set()
    for name in fields:
        value = conf.get(name)
        if value is None:
            if name in ("service", "pr"):
                problems.append(Problem(name, "required"))
                bad.add(name)
            continue
        for err in _validator(name).iter_errors(value):
            problems.append(Problem(name, _message(err)))
            bad.add(name)
    if catalogue is not None:
        problems.extend(_catalogue_problems(conf, catalogue, bad))
    return problems


def conf_problems(dag_id: str, conf: Any, catalogue: Catalogue | None = None) -> list[Problem]:
    """Every problem of the conf of a trigger of faye DAG ``dag_id`` (``None`` conf is ``{}``)."""
    conf = {} if conf is None else conf
    if dag_id in REQUEST_DAGS:
        return request_problems(conf, catalogue)
    if dag_id in PREVIEW_ACTION_FIELDS:
        return action_problems(dag_id, conf, catalogue)
    if dag_id == CLEANUP_DAG:
        if not isinstance(conf, Mapping):
            return [Problem("conf", f"must be a JSON object, got {_json_type(conf)}")]
        return _unknown_keys(conf, ())
    raise ValueError(f"{dag_id!r} is not one of faye's DAGs ({', '.join(FAYE_DAGS)})")


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def dag_params() -> dict[str, Any]:
    """Return the ``params`` of the request DAGs (Param objects built from SCHEMAS).

    ``service`` and ``slot`` carry the catalogue's names as ``examples`` (the form offers them; the
    gate checks the catalogue as it is at trigger time). Reading the catalogue file is no network,
    costs well under a millisecond (cached by modification time), and a missing or broken catalogue
    only leaves the examples out: the DAG file still parses.
    """
    from airflow.sdk import Param

    examples = _catalogue_examples()
    params: dict[str, Any] = {}
    for name, spec in SCHEMAS.items():
        schema = dict(spec)
        description = schema.pop("description")
        if examples.get(name):
            schema["examples"] = examples[name]
        if name in DEFAULTS:
            params[name] = Param(DEFAULTS[name], description=description, **schema)
        else:
            params[name] = Param(description=description, **schema)
    return params


def action_params(dag_id: str) -> dict[str, Any]:
    """The ``params`` of ``faye_teardown`` / ``faye_rollback`` (Param objects from the same schema)."""
    from airflow.sdk import Param

    examples = _catalogue_examples()
    params: dict[str, Any] = {}
    for name, spec in PREVIEW_ACTION_FIELDS[dag_id].items():
        schema = dict(spec)
        description = schema.pop("description")
        if examples.get(name):
            schema["examples"] = examples[name]
        if name in ACTION_DEFAULTS:
            params[name] = Param(ACTION_DEFAULTS[name], description=description, **schema)
        else:
            params[name] = Param(description=description, **schema)
    return params


@dataclass(frozen=True)
class PreviewAction:
    """One validated teardown or rollback: ``service``'s preview of pull request ``pr``."""

    service: str
    pr: int
    revision: str | None = None

    @property
    def tag(self) -> str:
        return tag_of(self.pr)


def validate_action(
    dag_id: str, conf: Mapping[str, Any], catalogue: Catalogue | None = None
) -> PreviewAction:
    """Validate a teardown/rollback conf; raise InvalidRequestError listing every problem at once."""
    problems = action_problems(dag_id, conf, catalogue)
    if problems:
        raise InvalidRequestError("invalid request: " + "; ".join(str(p) for p in problems))
    return PreviewAction(str(conf["service"]), int(conf["pr"]), conf.get("revision") or None)


def _catalogue_examples() -> dict[str, list[str]]:
    from faye_plugin.catalogue import load_catalogue

    try:
        catalogue = load_catalogue()
    except (CatalogueError, OSError):
        return {}
    slots = sorted({slot for spec in catalogue.services.values() for slot in spec.slots})
    return {"service": sorted(catalogue.services), "slot": slots}


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
        return tag_of(self.pr)


def validate_request(conf: Mapping[str, Any], catalogue: Catalogue | None = None) -> PreviewRequest:
    """Validate a conf; raise InvalidRequestError listing every bad or unknown field at once
    (and, given ``catalogue``, a service or slot it does not declare)."""
    problems = request_problems(conf, catalogue)
    if problems:
        raise InvalidRequestError("invalid request: " + "; ".join(str(p) for p in problems))
    return PreviewRequest(**{**DEFAULTS, **{k: v for k, v in conf.items() if v is not None}})
