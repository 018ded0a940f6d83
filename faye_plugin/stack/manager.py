"""``faye stack up | down | status``: bring the local stack's parts up, check them, and stop them.

``up`` is idempotent: what already runs (our pid file, same command line) is reused. Before starting
anything it checks every port it would need, so a taken port fails the whole ``up`` with nothing
half-started. ``down`` stops only what our pid files name.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from faye_plugin.exceptions import StackError
from faye_plugin.stack import airflow, caddy, catalogue, github, packages, podman, registry, sample, tls
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.processes import ProcessSpec, Supervisor, port_free

Say = Callable[[str], None]
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
ABSENT = "absent"
EMULATOR_MODULE = "faye_plugin.emulator.__main__"


def _quiet(_: str) -> None:
    return None


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Return True when ``url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def base_env() -> dict[str, str]:
    """The environment every part inherits: ours, minus what slows Python down."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def emulator_available() -> bool:
    try:
        return importlib.util.find_spec(EMULATOR_MODULE) is not None
    except ModuleNotFoundError:
        return False


@contextlib.contextmanager
def _locked(cfg: StackConfig) -> Iterator[None]:
    """Serialise ``up``/``down`` on one state folder."""
    cfg.home.mkdir(parents=True, exist_ok=True)
    with open(cfg.home / "stack.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Write ``status.json`` readable by its owner only: it holds the Airflow login (the benches read it).

    ``fchmod`` as well as the create mode: a file an older faye wrote world-readable is made private.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(status, indent=1))


class Stack:
    """The local stack of one state folder."""

    def __init__(self, cfg: StackConfig, say: Say = _quiet) -> None:
        self.cfg = cfg
        self.say = say
        self.sup = Supervisor(cfg.run_dir)

    # --- what the stack is made of ----------------------------------------------------------
    def specs(self) -> list[tuple[ProcessSpec, tuple[str, ...]]]:
        """Every process of the stack with the port keys it binds (none for unix sockets)."""
        env = base_env()
        out: list[tuple[ProcessSpec, tuple[str, ...]]] = [
            (registry.service_spec(self.cfg, env), ("registry",)),
            (caddy.service_spec(self.cfg, env), ("proxy", "proxy_admin")),
            (github.service_spec(self.cfg, env), ("github",)),
        ]
        for host in self.cfg.docker_hosts:
            keys = (f"docker_{host}",) if self.cfg.docker_port(host) else ()
            out.append((podman.service_spec(self.cfg, host, env), keys))
        if emulator_available():
            out.append((self.emulator_spec(env), ("cloud_run", "cloud_run_grpc")))
        return out

    def airflow_specs(self) -> list[tuple[ProcessSpec, tuple[str, ...]]]:
        """Airflow's processes with the ports each binds (the log servers included)."""
        workers = self.cfg.worker_names()
        ports: dict[str, tuple[str, ...]] = {
            "airflow-api-server": ("airflow",),
            "airflow-triggerer": ("trigger_log",),
            **{name: (f"worker_log_{i}",) for i, name in enumerate(workers, start=1)},
        }
        if not workers:
            ports["airflow-scheduler"] = ("worker_log",)
        return [(spec, ports.get(spec.name, ())) for spec in airflow.specs(self.cfg, base_env())]

    def emulator_spec(self, env: dict[str, str]) -> ProcessSpec:
        import sys

        state = self.cfg.home / "emulator"
        state.mkdir(parents=True, exist_ok=True)
        tls.ensure(self.emulator_tls_dir)
        return ProcessSpec(
            name="emulator",
            argv=[
                *(sys.executable, "-m", "faye_plugin.emulator", "--host", "127.0.0.1"),
                *("--port", str(self.cfg.ports["cloud_run"]), "--state-dir", str(state)),
                *("--docker-url", self.cfg.docker_url("run")),
                *("--grpc-port", str(self.cfg.ports["cloud_run_grpc"])),
                *("--tls-dir", str(self.emulator_tls_dir)),
            ],
            env=env,
            cwd=state,
            log=self.cfg.log_dir / "emulator.log",
        )

    @property
    def emulator_tls_dir(self) -> Path:
        """The stack's CA (``ca.pem``) and the emulator's gRPC server certificate."""
        return self.cfg.home / "emulator" / "tls"

    # --- checks -------------------------------------------------------------------------------
    def check_ports(self, wanted: list[tuple[str, str]]) -> None:
        """Fail with the port and its variable if a port of a part that is not running is taken.

        ``wanted`` lists (process name, port key) pairs.
        """
        for proc_name, key in wanted:
            if self.sup.pid(proc_name) is not None:
                continue
            port = self.cfg.port(key)
            if not port_free(port):
                raise StackError(
                    f"port {port} ({key}) is already in use by another program: move it with "
                    f"{self.cfg.port_variable(key)}=<port> or move every port with FAYE_PORT_BASE=<base>; "
                    f"nothing was started"
                )

    def health(self) -> dict[str, str]:
        """Return each part's health: healthy, unhealthy (expected but not answering) or absent."""
        cfg = self.cfg
        out = airflow.AirflowClient(cfg, timeout=3.0).health()
        out |= {
            "registry": HEALTHY if http_ok(registry.health_url(cfg)) else UNHEALTHY,
            "proxy": HEALTHY if http_ok(caddy.health_url(cfg)) else UNHEALTHY,
            "github": HEALTHY if http_ok(github.health_url(cfg)) else UNHEALTHY,
        }
        for host in cfg.docker_hosts:
            out[f"docker_{host}"] = HEALTHY if podman.ping(cfg.docker_endpoint(host)) else UNHEALTHY
        if emulator_available():
            out["cloud_run"] = HEALTHY if http_ok(f"{cfg.url('cloud_run')}/healthz") else UNHEALTHY
        else:
            out["cloud_run"] = ABSENT
        return out

    def wait_healthy(self, parts: list[str], timeout: float = 120.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            bad = [p for p in parts if health.get(p) != HEALTHY]
            if not bad:
                return health
            dead = [n for n in self.sup.names() if self.sup.exited(n)]
            if dead or time.monotonic() > deadline:
                logs = ", ".join(str(self.cfg.log_dir / f"{n}.log") for n in dead) or str(self.cfg.log_dir)
                why = f"exited: {', '.join(dead)}" if dead else f"not healthy after {timeout:.0f} s"
                raise StackError(f"{', '.join(bad)} did not come up ({why}); see {logs}")
            time.sleep(0.2)

    # --- up / down / status -------------------------------------------------------------------
    def up(self) -> dict[str, Any]:
        with _locked(self.cfg):
            return self._up()

    def _up(self) -> dict[str, Any]:
        cfg = self.cfg
        for sub in (cfg.run_dir, cfg.log_dir, cfg.podman_dir, cfg.airflow_home):
            sub.mkdir(parents=True, exist_ok=True)
        # Pid files of processes that died (a crash, a reboot): clear them, and stop what is left of
        # their sessions (orphans of ours that may still hold a port).
        stale = [name for name in self.sup.names() if self.sup.pid(name) is None]
        if stale:
            self.sup.stop_many(stale, grace=10)
        specs = self.specs()
        airflow_specs = self.airflow_specs()
        # Every port first: a taken one stops `up` before anything is installed or started.
        self.check_ports([(spec.name, key) for spec, keys in specs + airflow_specs for key in keys])
        installed = packages.ensure()
        if installed:
            self.say(f"installed Debian packages: {' '.join(installed)}")
            specs = self.specs()  # binaries' paths are known now
        if cfg.executor == "celery":
            airflow.check_redis(cfg)
            airflow.ensure_database(cfg)
        if sample.ensure(cfg.sample_repo):
            self.say(f"created the sample repository {cfg.sample_repo}")
        github.write_push_hook(cfg)
        written = catalogue.write(cfg)
        if written != "unchanged":
            self.say(f"catalogue {cfg.catalogue_path}: {written}")
        airflow.seed_password(cfg)
        airflow.write_env_sh(cfg)
        airflow.write_local_settings(cfg.airflow_home)
        for host in cfg.docker_hosts:
            if self.sup.pid(f"podman-{host}") is None:
                podman.tidy_socket(cfg, host)
        for spec, _ in specs:
            already = self.sup.pid(spec.name)
            pid = self.sup.start(spec)
            if already is None:
                self.say(f"started {spec.name} (pid {pid})")
        parts = ["registry", "proxy", "github", *[f"docker_{h}" for h in cfg.docker_hosts]]
        if emulator_available():
            parts.append("cloud_run")
        else:
            self.say("Cloud Run emulator: not available yet (faye_plugin.emulator has no __main__)")
        self.wait_healthy(parts)
        tar = podman.base_image_tar()
        for host in cfg.docker_hosts:
            if podman.ensure_base_image(cfg.docker_endpoint(host), tar):
                self.say(f"imported {podman.BASE_IMAGE} into {host}")
        self._up_airflow(airflow_specs)
        status = self.status()
        write_status(cfg.home / "status.json", status)
        return status

    def _up_airflow(self, specs: list[tuple[ProcessSpec, tuple[str, ...]]]) -> None:
        cfg = self.cfg
        fresh = [spec for spec, _ in specs if self.sup.pid(spec.name) is None]
        if fresh:
            t0 = time.monotonic()
            if airflow.migrate(cfg, base_env()):
                self.say(f"migrated the Airflow database in {time.monotonic() - t0:.1f} s")
        for spec in fresh:
            self.say(f"started {spec.name} (pid {self.sup.start(spec)})")
        keys = ["airflow", *(f"airflow_{k}" for k in airflow.HEALTH_KEYS)]
        self.wait_healthy(keys, timeout=240)
        client = airflow.AirflowClient(cfg, timeout=10)
        client.login()
        if client.ensure_pool(cfg.test_servers):
            self.say(f"pool faye_test_servers: {cfg.test_servers} slots")
        if fresh:
            dags, errors = client.wait_dags_loaded()
            self.say(f"DAGs loaded: {', '.join(dags) or 'none'}")
            for filename in errors:
                self.say(f"DAG import error in {filename} (see the Airflow UI)")
            unpaused = client.unpause_all()
            if unpaused:
                self.say(f"unpaused {', '.join(unpaused)}")

    def down(self) -> list[str]:
        """Stop every process our pid files name; return the names stopped."""
        with _locked(self.cfg):
            # Airflow first (it talks to the others), then the containers, then the rest; each batch
            # at once.
            names = self.sup.names()
            stopped = []
            airflow_names = [n for n in names if n.startswith("airflow")]
            for name in self.sup.stop_many(airflow_names):
                stopped.append(name)
                self.say(f"stopped {name}")
            for host in self.cfg.docker_hosts:
                if self.sup.pid(f"podman-{host}") is not None:
                    count = podman.remove_containers(self.cfg.docker_endpoint(host))
                    if count:
                        self.say(f"removed {count} container(s) of {host}")
            for name in self.sup.stop_many([n for n in names if n not in airflow_names]):
                stopped.append(name)
                self.say(f"stopped {name}")
            if podman.conmon_pids(self.cfg):
                for host in self.cfg.docker_hosts:
                    podman.remove_containers_offline(self.cfg, host)
                left = podman.conmon_pids(self.cfg)
                if left:
                    raise StackError(f"containers of this stack still run (conmon pids {left})")
            for host in self.cfg.docker_hosts:
                with contextlib.suppress(FileNotFoundError):
                    self.cfg.docker_socket(host).unlink()
            return stopped

    def status(self) -> dict[str, Any]:
        cfg = self.cfg
        health = self.health()
        pids = {name: self.sup.pid(name) for name in self.sup.names()}
        return {
            "state_dir": str(cfg.home),
            "airflow_url": cfg.url("airflow"),
            "airflow_username": "faye",
            "airflow_password": airflow.read_password(cfg),
            "env_sh": str(cfg.home / "env.sh"),
            "proxy_url": cfg.url("proxy"),
            "proxy_public_url": cfg.proxy_public_url,
            "proxy_admin_url": cfg.url("proxy_admin"),
            "registry_url": cfg.url("registry"),
            "registry_host": cfg.registry_host,
            "cloud_run_url": cfg.url("cloud_run"),
            "cloud_run_grpc_endpoint": f"127.0.0.1:{cfg.ports['cloud_run_grpc']}",
            "cloud_run_grpc_ca": str(self.emulator_tls_dir / tls.CA_FILE),
            "github_url": cfg.url("github"),
            "github_repo": github.SAMPLE_REPO,
            "build_docker_url": cfg.docker_url("build"),
            "run_docker_url": cfg.docker_url("run"),
            "test_docker_urls": [cfg.docker_url(h) for h in cfg.test_server_names],
            "sample_repo": str(cfg.sample_repo),
            "catalogue": str(cfg.catalogue_path),
            "executor": cfg.executor,
            "health": health,
            "healthy": all(v in (HEALTHY, ABSENT) for v in health.values()),
            "pids": pids,
        }
