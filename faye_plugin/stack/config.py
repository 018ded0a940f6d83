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
    "cloud_run_grpc": (7, "FAYE_CLOUD_RUN_GRPC_PORT"),
    "github": (8, "FAYE_GITHUB_PORT"),
}

EXECUTORS = ("local", "celery")
# Docker hosts served over TCP (FAYE_DOCKER_TCP) listen on FAYE_PORT_BASE + this + their index in
# ``docker_hosts``; Celery worker N > 1 serves its task logs on FAYE_PORT_BASE + WORKER_LOG_OFFSET + N.
DOCKER_TCP_OFFSET = 12
WORKER_LOG_OFFSET = 30
MAX_CELERY_WORKERS = 8


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
    # CeleryExecutor: how many workers (each its own folder, environment and hostname) and the queue
    # the builds go to (served by the last worker only); None keeps builds on the default queue.
    celery_workers: int = 1
    build_queue: str | None = None
    # Docker hosts reached over tcp://127.0.0.1:<port> instead of a unix socket
    tcp_docker_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackConfig:
        """Read the settings from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env
        home = Path(env.get("FAYE_HOME") or ".faye").expanduser().resolve()
        base = _int(env, "FAYE_PORT_BASE", DEFAULT_PORT_BASE, 1024, 65535 - 48)
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
        test_servers = _int(env, "FAYE_TEST_SERVERS", DEFAULT_TEST_SERVERS, 1, 16)
        workers = _int(env, "FAYE_CELERY_WORKERS", 1, 1, MAX_CELERY_WORKERS)
        build_queue = (env.get("FAYE_BUILD_QUEUE") or "").strip() or None
        if executor != "celery" and (workers > 1 or build_queue):
            raise StackError("FAYE_CELERY_WORKERS and FAYE_BUILD_QUEUE need FAYE_EXECUTOR=celery")
        hosts = ["build", "run", *(f"test-{i}" for i in range(1, test_servers + 1))]
        tcp = frozenset(h.strip() for h in (env.get("FAYE_DOCKER_TCP") or "").split(",") if h.strip())
        if tcp - set(hosts):
            raise StackError(
                f"FAYE_DOCKER_TCP names {', '.join(sorted(tcp - set(hosts)))}: not a Docker host of the "
                f"stack ({', '.join(hosts)})"
            )
        return cls(
            home=home,
            port_base=base,
            ports=ports,
            test_servers=test_servers,
            dags_folder=Path(dags).resolve() if dags else default_dags_folder(),
            database_url=database_url,
            executor=executor,
            redis_url=(env.get("FAYE_REDIS_URL") or "redis://127.0.0.1:6379/0").strip(),
            celery_workers=workers,
            build_queue=build_queue,
            tcp_docker_hosts=tcp,
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

    def docker_port(self, host: str) -> int | None:
        """The loopback TCP port of a host in ``FAYE_DOCKER_TCP``, else None (a unix socket)."""
        if host not in self.tcp_docker_hosts:
            return None
        return self.port_base + DOCKER_TCP_OFFSET + self.docker_hosts.index(host)

    def docker_endpoint(self, host: str) -> Path | tuple[str, int]:
        """Where the host's Docker API listens: its socket file, or ``("127.0.0.1", port)``."""
        port = self.docker_port(host)
        return self.docker_socket(host) if port is None else ("127.0.0.1", port)

    def docker_url(self, host: str) -> str:
        port = self.docker_port(host)
        return f"unix://{self.docker_socket(host)}" if port is None else f"tcp://127.0.0.1:{port}"

    # --- Celery workers ------------------------------------------------------------------------
    def worker_names(self) -> list[str]:
        """The Celery workers' process names (none for LocalExecutor); the first keeps the old name."""
        if self.executor != "celery":
            return []
        more = [f"airflow-celery-worker-{i}" for i in range(2, self.celery_workers + 1)]
        return ["airflow-celery-worker", *more]

    def worker_dir(self, index: int) -> Path:
        """Worker ``index``'s own folder (its AIRFLOW_HOME, working folder and TMPDIR)."""
        return self.home / "workers" / f"worker-{index}"

    def worker_log_port(self, index: int) -> int:
        return self.ports["worker_log"] if index == 1 else self.port_base + WORKER_LOG_OFFSET + index

    def worker_queues(self, index: int) -> list[str]:
        """The queues worker ``index`` serves: ``default``, and the build queue for the last worker."""
        queues = ["default"]
        if self.build_queue and index == self.celery_workers:
            queues.append(self.build_queue)
        return queues

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

    def port(self, key: str) -> int:
        """The port of ``key``: a part of ``PORTS``, ``docker_<host>`` (TCP) or ``worker_log_<N>``."""
        if key in self.ports:
            return self.ports[key]
        if key.startswith("docker_") and (port := self.docker_port(key.removeprefix("docker_"))):
            return port
        if key.startswith("worker_log_"):
            return self.worker_log_port(int(key.removeprefix("worker_log_")))
        raise KeyError(key)

    def port_variable(self, part: str) -> str:
        return PORTS[part][1] if part in PORTS else "FAYE_PORT_BASE"
