"""The service catalogue: which services faye can preview, where they run, how they build and test.

The catalogue is one YAML file (``[faye] catalogue``); docs/architecture.md shows its schema. It is
loaded on demand, inside tasks, never while a DAG file is parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faye_plugin.exceptions import CatalogueError
from faye_plugin.naming import DEFAULT_MAX_LIFETIME_HOURS, DEFAULT_MAX_TTL_HOURS, DEFAULT_TTL_HOURS

NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$")
SLOT_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
SLOT_POLICIES = ("evict-oldest", "wait", "fail")
GITHUB_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
CONN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
GITHUB_KEYS = ("repo", "conn_id")


@dataclass(frozen=True)
class Defaults:
    ttl_hours: int = DEFAULT_TTL_HOURS
    max_ttl_hours: int = DEFAULT_MAX_TTL_HOURS
    slot_policy: str = "evict-oldest"
    max_lifetime_hours: int = DEFAULT_MAX_LIFETIME_HOURS


@dataclass(frozen=True)
class DockerHost:
    """A Docker Engine API: the builder or one test server."""

    name: str
    docker_url: str
    tls_ca_cert: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None
    tls_verify: bool = True


@dataclass(frozen=True)
class CloudRunTarget:
    project: str
    region: str
    service: str
    gcp_conn_id: str = "faye_cloud_run"


@dataclass(frozen=True)
class BuildSource:
    git_url: str
    dockerfile: str = "Dockerfile"
    context: str = "."
    build_args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TestSpec:
    image: str
    command: list[str]
    timeout_minutes: int = 10

    __test__ = False


@dataclass(frozen=True)
class GithubTarget:
    """Where a service's previews are reported on GitHub (docs/github.md)."""

    repo: str  # owner/name
    conn_id: str = "faye_github"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    cloud_run: CloudRunTarget
    image: str
    build: BuildSource
    slots: tuple[str, ...]
    test: TestSpec | None
    registry_conn_id: str = "faye_registry"
    proxy_conn_id: str = "faye_proxy"
    port: int = 8080
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    # faye_cleanup removes an unpinned preview this long after its first deploy (the service's own
    # ``max_lifetime_hours``, else the catalogue default's)
    max_lifetime_hours: int = DEFAULT_MAX_LIFETIME_HOURS
    # None: the service reports nothing to GitHub
    github: GithubTarget | None = None

    def require_slot(self, slot: str) -> str:
        if slot not in self.slots:
            raise CatalogueError(
                f"unknown slot {slot!r} for service {self.name!r}: its slots are {', '.join(self.slots)}"
            )
        return slot


@dataclass(frozen=True)
class Catalogue:
    defaults: Defaults
    builder: DockerHost | None
    test_servers: tuple[DockerHost, ...]
    services: dict[str, ServiceSpec]
    path: Path | None = None

    def service(self, name: str) -> ServiceSpec:
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services)) or "none"
            raise CatalogueError(f"unknown service {name!r}: the catalogue declares {known}") from None


def _need(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise CatalogueError(f"{where}: missing required key {key!r}")
    return data[key]


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CatalogueError(f"{where}: expected a mapping, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}


def _docker_host(data: Any, where: str) -> DockerHost:
    if not isinstance(data, dict):
        raise CatalogueError(f"{where}: expected a mapping with docker_url")
    return DockerHost(
        name=str(data.get("name", where)),
        docker_url=str(_need(data, "docker_url", where)),
        tls_ca_cert=data.get("tls_ca_cert"),
        tls_client_cert=data.get("tls_client_cert"),
        tls_client_key=data.get("tls_client_key"),
        tls_verify=bool(data.get("tls_verify", True)),
    )


def _hours(value: Any, where: str) -> int:
    try:
        hours = int(value)
    except (TypeError, ValueError):
        raise CatalogueError(f"{where}: expected a whole number of hours, got {value!r}") from None
    if hours < 1:
        raise CatalogueError(f"{where}: expected at least 1 hour, got {hours}")
    return hours


def _github(data: Any, where: str) -> GithubTarget | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CatalogueError(f"{where}: expected a mapping with repo (owner/name) and conn_id")
    unknown = sorted(str(k) for k in data if k not in GITHUB_KEYS)
    if unknown:
        raise CatalogueError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(GITHUB_KEYS)})"
        )
    repo = data.get("repo")
    if not isinstance(repo, str) or not GITHUB_REPO_RE.match(repo):
        raise CatalogueError(f"{where}.repo: expected owner/name, got {repo!r}")
    conn_id = data.get("conn_id", "faye_github")
    if not isinstance(conn_id, str) or not CONN_ID_RE.match(conn_id):
        raise CatalogueError(f"{where}.conn_id: expected an Airflow connection id, got {conn_id!r}")
    return GithubTarget(repo=repo, conn_id=conn_id)


def _service(name: str, data: Any, defaults: Defaults | None = None) -> ServiceSpec:
    where = f"services.{name}"
    if not NAME_RE.match(name):
        raise CatalogueError(f"{where}: a service name must be a lowercase DNS label (got {name!r})")
    if not isinstance(data, dict):
        raise CatalogueError(f"{where}: expected a mapping")
    cr = _need(data, "cloud_run", where)
    build = _need(data, "build", where)
    slots = data.get("slots") or []
    if not isinstance(slots, list) or not slots:
        raise CatalogueError(f"{where}.slots: declare at least one slot")
    for slot in slots:
        if not SLOT_RE.match(str(slot)):
            raise CatalogueError(f"{where}.slots: {slot!r} is not a lowercase DNS label")
    test = data.get("test")
    command = (test or {}).get("command")
    if test is not None and (not isinstance(command, list) or not command):
        raise CatalogueError(f"{where}.test.command: expected a non-empty list of arguments")
    return ServiceSpec(
        name=name,
        cloud_run=CloudRunTarget(
            project=str(_need(cr, "project", f"{where}.cloud_run")),
            region=str(_need(cr, "region", f"{where}.cloud_run")),
            service=str(cr.get("service", name)),
            gcp_conn_id=str(cr.get("gcp_conn_id", "faye_cloud_run")),
        ),
        image=str(_need(data, "image", where)),
        build=BuildSource(
            git_url=str(_need(build, "git_url", f"{where}.build")),
            dockerfile=str(build.get("dockerfile", "Dockerfile")),
            context=str(build.get("context", ".")),
            build_args=_str_map(build.get("build_args"), f"{where}.build.build_args"),
        ),
        slots=tuple(str(s) for s in slots),
        test=None
        if test is None
        else TestSpec(
            image=str(test.get("image", data["image"])),
            command=[str(c) for c in command or ()],
            timeout_minutes=int(test.get("timeout_minutes", 10)),
        ),
        registry_conn_id=str(data.get("registry_conn_id", "faye_registry")),
        proxy_conn_id=str(data.get("proxy_conn_id", "faye_proxy")),
        port=int(data.get("port", 8080)),
        env=_str_map(data.get("env"), f"{where}.env"),
        secret_env=_str_map(data.get("secret_env"), f"{where}.secret_env"),
        max_lifetime_hours=_hours(data["max_lifetime_hours"], f"{where}.max_lifetime_hours")
        if data.get("max_lifetime_hours") is not None
        else (defaults or Defaults()).max_lifetime_hours,
        github=_github(data.get("github"), f"{where}.github"),
    )


def parse_catalogue(data: Any, path: Path | None = None) -> Catalogue:
    """Validate a catalogue document and return it typed; raise CatalogueError naming what is wrong."""
    if not isinstance(data, dict):
        raise CatalogueError("the catalogue must be a mapping with a 'services' key")
    raw_defaults = data.get("defaults") or {}
    defaults = Defaults(
        ttl_hours=int(raw_defaults.get("ttl_hours", DEFAULT_TTL_HOURS)),
        max_ttl_hours=int(raw_defaults.get("max_ttl_hours", DEFAULT_MAX_TTL_HOURS)),
        slot_policy=str(raw_defaults.get("slot_policy", "evict-oldest")),
        max_lifetime_hours=_hours(
            raw_defaults.get("max_lifetime_hours", DEFAULT_MAX_LIFETIME_HOURS), "defaults.max_lifetime_hours"
        ),
    )
    if defaults.slot_policy not in SLOT_POLICIES:
        raise CatalogueError(
            f"defaults.slot_policy: {defaults.slot_policy!r} is not one of {', '.join(SLOT_POLICIES)}"
        )
    servers = data.get("test_servers") or []
    if not isinstance(servers, list):
        raise CatalogueError("test_servers: expected a list")
    test_servers = tuple(_docker_host(s, f"test_servers[{i}]") for i, s in enumerate(servers))
    names = [s.name for s in test_servers]
    if len(set(names)) != len(names):
        raise CatalogueError(f"test_servers: names must be unique (got {names})")
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        raise CatalogueError("services: declare at least one service")
    builder = data.get("builder")
    return Catalogue(
        defaults=defaults,
        builder=None if builder is None else _docker_host({"name": "builder", **builder}, "builder"),
        test_servers=test_servers,
        services={str(n): _service(str(n), d, defaults) for n, d in services.items()},
        path=path,
    )


_cache: dict[Path, tuple[float, Catalogue]] = {}


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Load (and cache by modification time) the catalogue at ``path`` or the configured one."""
    if path is None:
        from faye_plugin.settings import catalogue_path

        path = catalogue_path()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        raise CatalogueError(
            f"no catalogue at {path}: set [faye] catalogue (AIRFLOW__FAYE__CATALOGUE) to its path"
        ) from None
    cached = _cache.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CatalogueError(f"{path}: not valid YAML: {err}") from None
    catalogue = parse_catalogue(data, path)
    _cache[path] = (mtime, catalogue)
    return catalogue
