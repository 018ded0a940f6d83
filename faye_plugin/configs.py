"""A preview's deployment configs: the environment, a ``.env`` file and a docker-compose file.

The catalogue's ``env`` values are small Jinja templates (``"hello from PR {{ pr }}"``) rendered for
one preview. ``secret_env`` entries are references, ``conn:<conn_id>:<field>`` or ``var:<name>``,
resolved only inside a task's ``execute()`` (:func:`resolve_secrets`), masked in the logs, and never
returned to XCom or written to disk: the artifacts carry the reference instead of the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from faye_plugin.catalogue import ServiceSpec
from faye_plugin.exceptions import CatalogueError

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONN_FIELDS = ("host", "login", "password", "schema", "port", "uri")
ENV_FILE = ".env"
COMPOSE_FILE = "docker-compose.yaml"


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret kept by Airflow: a connection field/extra, or a variable."""

    kind: str  # "conn" | "var"
    key: str  # connection id or variable name
    field: str = ""  # connection field or extra key (conn only)

    def __str__(self) -> str:
        return f"conn:{self.key}:{self.field}" if self.kind == "conn" else f"var:{self.key}"


def parse_secret_ref(name: str, ref: str) -> SecretRef:
    """Parse one ``secret_env`` value; raise CatalogueError naming the variable when it is malformed."""
    parts = ref.split(":")
    if parts[0] == "conn" and len(parts) == 3 and parts[1] and parts[2]:
        return SecretRef("conn", parts[1], parts[2])
    if parts[0] == "var" and len(parts) == 2 and parts[1]:
        return SecretRef("var", parts[1])
    raise CatalogueError(
        f"secret_env.{name}: {ref!r} is not a reference; use 'conn:<conn_id>:<field>' or 'var:<name>'"
    )


def secret_refs(spec: ServiceSpec) -> dict[str, SecretRef]:
    """Return the service's secret references by variable name, checked."""
    refs = {}
    for name, ref in spec.secret_env.items():
        if not ENV_NAME_RE.match(name):
            raise CatalogueError(f"secret_env: {name!r} is not a valid environment variable name")
        if name in spec.env:
            raise CatalogueError(f"{name} is declared in both env and secret_env of {spec.name}")
        refs[name] = parse_secret_ref(name, ref)
    return refs


def resolve_secrets(refs: Mapping[str, SecretRef]) -> dict[str, str]:
    """Read each secret from Airflow (connections/variables) and mask it in every log.

    Call this only inside ``execute()`` and never return the result: it holds the values.
    """
    from airflow.sdk import Connection, Variable
    from airflow.sdk.log import mask_secret

    values: dict[str, str] = {}
    for name, ref in refs.items():
        if ref.kind == "var":
            value = str(Variable.get(ref.key))
        else:
            conn = Connection.get(ref.key)
            if ref.field == "uri":
                value = conn.get_uri()
            elif ref.field in CONN_FIELDS:
                value = str(getattr(conn, ref.field) or "")
            else:
                extra = conn.extra_dejson
                if ref.field not in extra:
                    raise CatalogueError(
                        f"secret_env.{name}: connection {ref.key!r} has no field or extra {ref.field!r}"
                    )
                value = str(extra[ref.field])
        if not value:
            raise CatalogueError(f"secret_env.{name}: {ref} is empty")
        mask_secret(value, name)
        values[name] = value
    return values


def render_env(spec: ServiceSpec, context: Mapping[str, Any]) -> dict[str, str]:
    """Return the preview's plain environment: faye's own variables plus the catalogue's ``env``.

    ``context`` carries ``service, pr, sha, slot, tag, image, slot_url``; catalogue values may use them
    as Jinja expressions. An undefined name is an error naming the variable.
    """
    env = {
        "GIT_SHA": str(context["sha"]),
        "FAYE_SERVICE": str(context["service"]),
        "FAYE_PR": str(context["pr"]),
        "FAYE_SLOT": str(context["slot"]),
        "FAYE_TAG": str(context["tag"]),
        "PREVIEW_URL": str(context.get("slot_url") or ""),
    }
    jinja = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    for name, template in spec.env.items():
        if not ENV_NAME_RE.match(name):
            raise CatalogueError(f"env: {name!r} is not a valid environment variable name")
        try:
            env[name] = jinja.from_string(template).render(**context)
        except TemplateError as err:
            raise CatalogueError(f"env.{name} of {spec.name}: cannot render {template!r}: {err}") from None
    return env


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("$", "\\$")
    return f'"{escaped}"'


def render_dotenv(env: Mapping[str, str], refs: Mapping[str, SecretRef]) -> str:
    """Return a ``.env`` file: plain values quoted, secrets as comments naming their reference."""
    lines = ["# faye preview environment (rendered by prepare_configs)"]
    lines += [f"{name}={_quote(value)}" for name, value in sorted(env.items())]
    for name, ref in sorted(refs.items()):
        lines.append(f"# {name}: secret, from {ref}; set at deploy, never written here")
    return "\n".join(lines) + "\n"


def render_compose(
    spec: ServiceSpec, *, image: str, slot: str, tag: str, refs: Mapping[str, SecretRef]
) -> str:
    """Return a docker-compose file that runs the same preview locally (secrets from the caller's env)."""
    service: dict[str, Any] = {
        "image": image,
        "env_file": [ENV_FILE],
        "environment": {"PORT": str(spec.port)},
        "ports": [f"{spec.port}:{spec.port}"],
        "labels": {"dev.faye.service": spec.name, "dev.faye.slot": slot, "dev.faye.tag": tag},
    }
    for name, ref in sorted(refs.items()):
        service["environment"][name] = f"${{{name}:?secret {ref}}}"
    doc = {"name": f"faye-{spec.name}-{tag}", "services": {spec.name: service}}
    return yaml.safe_dump(doc, sort_keys=False)


def write_artifacts(folder: Path, files: Mapping[str, str]) -> dict[str, str]:
    """Write the files into ``folder`` (created, mode 0700; files 0600); return their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    paths = {}
    for name, text in files.items():
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        paths[name] = str(path)
    return paths
