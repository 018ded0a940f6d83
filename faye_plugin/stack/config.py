"""The local stack's settings, read once from the environment.

State folder: ``$FAYE_HOME`` (default ``./.faye``). Every port derives from ``FAYE_PORT_BASE``
(default 28700) and each can be moved alone by its own variable (see docs/architecture.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import faye_plugin
from faye_plugin.exceptions import StackError

DEFAULT_PORT_BASE = 28700
DEFAULT_TEST_SERVERS = 2

# part -> (offset from FAYE_PORT_BASE, the variable that moves it alone)
PORTS: dict[str, tuple[int, str]] = {
    "airflow": (0, "FAYE_AIRFLOW_PORT"),
    "proxy": (1, "FAYE_PROXY_PORT"),
    "proxy_admin": (2, "FAYE_PROXY_ADMIN_PORT"),
    "registry": (3, "FAYE_REGISTRY_PORT"),
    "cloud_run": (4, "FAYE_CLOUD_RUN_PORT"),
    "worker_log": (5, "FAYE_WORKER_LOG_PORT"),
    "trigger_log": (6, "FAYE_TRIGGER_LOG_PORT"),
}

EXECUTORS = ("local", "celery")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise StackError(f"{name}={value} is out of range {low}..{high}")
    return value


def default_dags_folder() -> Path:
    """Return the checkout's ``dags/`` folder, found next to the installed ``faye_plugin`` package."""
    return Path(faye_plugin.__file__).resolve().parent.parent / "dags"


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its state and which ports its parts listen on."""

    home: Path
    port_base: int
    ports: dict[str, int]
    test_servers: int = DEFAULT_TEST_SERVERS
    dags_folder: Path = field(default_factory=default_dags_folder)
    database_url: str | None = None
    executor: str = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackConfig:
        """Read the settings from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env
        home = Path(env.get("FAYE_HOME") or ".faye").expanduser().resolve()
        base = _int(env, "FAYE_PORT_BASE", DEFAULT_PORT_BASE, 1024, 65535 - 16)
        ports = {part: _int(env, var, base + offset, 1, 65535) for part, (offset, var) in PORTS.items()}
        by_port: dict[int, str] = {}
        for part, port in ports.items():
            if port in by_port:
                raise StackError(
                    f"port {port} is set for both {by_port[port]} ({PORTS[by_port[port]][1]}) "
                    f"and {part} ({PORTS[part][1]}); move one of them"
                )
            by_port[port] = part
        executor = (env.get("FAYE_EXECUTOR") or "local").strip().lower()
        if executor not in EXECUTORS:
            raise StackError(f"FAYE_EXECUTOR={executor!r} is not one of {', '.join(EXECUTORS)}")
        database_url = (env.get("FAYE_DATABASE_URL") or "").strip() or None
        if executor == "celery" and database_url is None:
            raise StackError("FAYE_EXECUTOR=celery needs FAYE_DATABASE_URL (Celery cannot use SQLite)")
        dags = env.get("FAYE_DAGS_FOLDER")
        return cls(
            home=home,
            port_base=base,
            ports=ports,
            test_servers=_int(env, "FAYE_TEST_SERVERS", DEFAULT_TEST_SERVERS, 1, 16),
            dags_folder=Path(dags).resolve() if dags else default_dags_folder(),
            database_url=database_url,
            executor=executor,
            redis_url=(env.get("FAYE_REDIS_URL") or "redis://127.0.0.1:6379/0").strip(),
        )

    # --- folders -------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """Pid files of the processes the stack started."""
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def podman_dir(self) -> Path:
        return self.home / "podman"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def sample_repo(self) -> Path:
        return self.home / "sample" / "hello"

    @property
    def catalogue_path(self) -> Path:
        return self.home / "catalogue.yaml"

    # --- Docker hosts --------------------------------------------------------------------------
    @property
    def test_server_names(self) -> list[str]:
        return [f"test-{i}" for i in range(1, self.test_servers + 1)]

    @property
    def docker_hosts(self) -> list[str]:
        """Every podman service: the builder, the emulator's runner, then the test servers."""
        return ["build", "run", *self.test_server_names]

    def docker_socket(self, host: str) -> Path:
        return self.podman_dir / f"{host}.sock"

    def docker_url(self, host: str) -> str:
        return f"unix://{self.docker_socket(host)}"

    # --- URLs ----------------------------------------------------------------------------------
    def url(self, part: str) -> str:
        return f"http://127.0.0.1:{self.ports[part]}"

    @property
    def registry_host(self) -> str:
        """The registry as image names spell it: ``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.ports['registry']}"

    @property
    def proxy_public_url(self) -> str:
        return f"http://{{slot}}.preview.localhost:{self.ports['proxy']}"

    def port_variable(self, part: str) -> str:
        return PORTS[part][1]
