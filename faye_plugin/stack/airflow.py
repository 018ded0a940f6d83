"""Airflow 3.3 for the local stack: settings, secrets, migrate, the four processes, pool and DAGs.

Embedded default: LocalExecutor on SQLite in ``$FAYE_HOME/airflow``. With ``FAYE_DATABASE_URL`` the
metadata DB is that database (created if missing, PostgreSQL); ``FAYE_EXECUTOR=celery`` adds
``FAYE_CELERY_WORKERS`` ``celery worker`` processes on ``FAYE_REDIS_URL``. Every process gets the same
Airflow settings (one JWT secret), which are also written to ``$FAYE_HOME/env.sh`` for the ``airflow``
CLI. Each Celery worker shares only what a worker on another machine would share (the settings, the
metadata DB, the broker, the DAGs and catalogue, the task-log volume): it has its own folder
(AIRFLOW_HOME, working folder, TMPDIR), its own Celery node name and the hostname its task instances
record, and its own queues (the last one also serves ``FAYE_BUILD_QUEUE``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faye_plugin.exceptions import FayeError, StackError
from faye_plugin.settings import TEST_SERVERS_POOL
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.processes import ProcessSpec

USERNAME = "faye"
# A read-only user (Airflow's viewer role): what a person who may watch but not act sees.
VIEWER_USERNAME = "faye-viewer"
# name -> (airflow sub-command, titles the process may set itself)
COMPONENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "airflow-api-server": (("api-server",), ("airflow api_server",)),
    "airflow-scheduler": (("scheduler",), ()),
    "airflow-dag-processor": (("dag-processor",), ()),
    "airflow-triggerer": (("triggerer",), ()),
}
CELERY_WORKER = "airflow-celery-worker"
HEALTH_KEYS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
# A worker that died (SIGKILL, a lost machine) is noticed this many seconds after its last heartbeat
# (Airflow's default is 300 s); Celery stacks only.
CELERY_HEARTBEAT_TIMEOUT = "45"


def component_names(cfg: StackConfig) -> list[str]:
    return [*COMPONENTS, *cfg.worker_names()]


def worker_hostname(index: int) -> str:
    """The hostname task instances of Celery worker ``index`` record (and its Celery node name)."""
    return f"faye-worker-{index}"


def stack_secrets(cfg: StackConfig) -> dict[str, str]:
    """Return the stack's secrets, generating them once into ``$FAYE_HOME/secrets.json`` (mode 600)."""
    path = cfg.home / "secrets.json"
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    wanted = {
        "airflow_password": lambda: secrets.token_urlsafe(12),
        "viewer_password": lambda: secrets.token_urlsafe(12),
        "jwt_secret": lambda: secrets.token_urlsafe(64),
        "api_secret_key": lambda: secrets.token_urlsafe(32),
        "fernet_key": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "hello_db_password": lambda: secrets.token_urlsafe(12),
        # the token the GitHub double asks for (connection faye_github)
        "github_token": lambda: "ghp_" + secrets.token_urlsafe(27),
        # the secret GitHub signs its webhooks with (connection faye_github_webhook)
        "github_webhook_secret": lambda: secrets.token_urlsafe(24),
    }
    changed = False
    for key, make in wanted.items():
        if not isinstance(data.get(key), str):
            data[key] = make()
            changed = True
    if changed:
        cfg.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
    return data


def read_password(cfg: StackConfig) -> str | None:
    """Return the faye user's password if the stack has one yet (never creates it)."""
    return read_secrets(cfg).get("airflow_password")


def passwords_file(cfg: StackConfig) -> Path:
    return cfg.airflow_home / "passwords.json"


def database_url(cfg: StackConfig) -> str:
    if cfg.database_url:
        return cfg.database_url
    return f"sqlite:///{cfg.airflow_home / 'airflow.db'}"


def read_secrets(cfg: StackConfig) -> dict[str, str]:
    """The stack's secrets as far as they exist (never creates them)."""
    try:
        data = json.loads((cfg.home / "secrets.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def connections(cfg: StackConfig, secrets: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``AIRFLOW_CONN_*`` variables of docs/architecture.md (JSON form, no DB writes).

    The one definition of the stack's connections: Airflow's processes get them through
    ``airflow_env``, the CLI through ``cli/_common.use_stack_connections``. With ``secrets`` None the
    secrets are read as they exist (never created) and a connection whose secret is missing is left out.
    """
    sec = read_secrets(cfg) if secrets is None else secrets
    conns: dict[str, dict[str, Any]] = {
        "faye_cloud_run": {
            "conn_type": "google_cloud_platform",
            "extra": {"is_anonymous": True, "project": "local", "api_endpoint": cfg.url("cloud_run")},
        },
        "faye_registry": {"conn_type": "faye_registry", "host": cfg.url("registry")},
        "faye_proxy": {
            "conn_type": "faye_proxy",
            "host": cfg.url("proxy_admin"),
            "extra": {
                "server": "previews",
                "domain": "preview.localhost",
                "public_url": cfg.proxy_public_url,
            },
        },
    }
    if "hello_db_password" in sec:
        # the sample service's secret_env (catalogue: conn:faye_hello_db:password)
        conns["faye_hello_db"] = {
            "conn_type": "generic",
            "login": "hello",
            "password": sec["hello_db_password"],
        }
    if "github_token" in sec:
        # the GitHub double (stack/github_double.py): what the catalogue's github blocks report through
        conns["faye_github"] = {
            "conn_type": "github",
            "host": cfg.url("github"),
            "password": sec["github_token"],
            "extra": {"seconds_between_writes": 0},
        }
    if "github_webhook_secret" in sec:
        # POST /faye/github/webhook checks X-Hub-Signature-256 with this secret (docs/github.md)
        conns["faye_github_webhook"] = {"conn_type": "generic", "password": sec["github_webhook_secret"]}
    if "airflow_password" in sec:
        # Airflow's own REST API: the queue steps list and supersede runs through it (docs/queue.md)
        conns["faye_airflow_api"] = {
            "conn_type": "faye_airflow_api",
            "host": cfg.url("airflow"),
            "login": USERNAME,
            "password": sec["airflow_password"],
        }
    return {f"AIRFLOW_CONN_{cid.upper()}": json.dumps(conn) for cid, conn in conns.items()}


def airflow_env(cfg: StackConfig) -> dict[str, str]:
    """Return the settings every Airflow process of the stack shares (not the whole environment)."""
    sec = stack_secrets(cfg)
    port = cfg.ports["airflow"]
    env = {
        "FAYE_HOME": str(cfg.home),
        "AIRFLOW_HOME": str(cfg.airflow_home),
        "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX", str(cfg.home / "pycache")),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.dags_folder),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if cfg.executor == "celery" else "LocalExecutor",
        # 2 cores: LocalExecutor pre-forks `parallelism` workers (32 by default, 1.8 GB PSS).
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__FERNET_KEY": sec["fernet_key"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin,{VIEWER_USERNAME}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(cfg)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url(cfg),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": sec["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": sec["jwt_secret"],
        # the task-log volume every component shares (the official compose's ./logs)
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(cfg.airflow_home / "logs"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(cfg.ports["worker_log"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(cfg.ports["trigger_log"]),
        # a new or changed DAG file is seen within ~10 s
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        # ~0.2 s per dependency hop instead of 1 s (see README for the idle-CPU cost)
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
        "AIRFLOW__FAYE__CATALOGUE": str(cfg.catalogue_path),
        # the address of the Airflow UI in the links faye reports to GitHub (docs/github.md)
        "AIRFLOW__FAYE__AIRFLOW_URL": cfg.url("airflow"),
        # A task's first call to the execution API (`ti_run`) is not retried on a read timeout, and
        # the api-server of a busy 2-core machine took more than the default 5 s to answer: the task
        # then failed before it started (seen with LocalExecutor and Celery alike).
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        **connections(cfg, sec),
    }
    if cfg.executor == "celery":
        env |= {
            "AIRFLOW__CELERY__BROKER_URL": cfg.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database_url(cfg).replace("+psycopg2", ""),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": CELERY_HEARTBEAT_TIMEOUT,
        }
    if cfg.build_queue:
        env["AIRFLOW__FAYE__BUILD_QUEUE"] = cfg.build_queue
    return env


# What each Celery worker has of its own (everything else of ``airflow_env`` is shared).
PER_WORKER = ("AIRFLOW_HOME", "TMPDIR", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT")


def worker_env(cfg: StackConfig, base: dict[str, str], index: int) -> dict[str, str]:
    """Worker ``index``'s environment: the shared settings plus its own folder, log port and hostname."""
    folder = cfg.worker_dir(index)
    return process_env(cfg, base) | {
        "AIRFLOW_HOME": str(folder / "airflow"),
        "TMPDIR": str(folder / "tmp"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(cfg.worker_log_port(index)),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "faye_plugin.stack.worker.hostname",
        "FAYE_WORKER_HOSTNAME": worker_hostname(index),
    }


def worker_spec(cfg: StackConfig, base: dict[str, str], index: int) -> ProcessSpec:
    folder = cfg.worker_dir(index)
    for sub in ("airflow", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    write_local_settings(folder / "airflow")
    name = cfg.worker_names()[index - 1]
    return ProcessSpec(
        name=name,
        argv=[
            *(sys.executable, "-m", "airflow", "celery", "worker"),
            *("--celery-hostname", f"{worker_hostname(index)}@%h"),
            *("--queues", ",".join(cfg.worker_queues(index))),
        ],
        env=worker_env(cfg, base, index),
        cwd=folder,
        log=cfg.log_dir / f"{name}.log",
        titles=("[celeryd: ",),  # celery renames its main process
    )


def process_env(cfg: StackConfig, base: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env | airflow_env(cfg)


def write_env_sh(cfg: StackConfig) -> Path:
    """Write ``$FAYE_HOME/env.sh``: ``source`` it to run ``airflow`` CLI commands against the stack."""
    lines = ["# source me: the local stack's Airflow settings", "unset PYTHONDONTWRITEBYTECODE"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(airflow_env(cfg).items())]
    lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    path = cfg.home / "env.sh"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


LOCAL_SETTINGS = """\
# Written by faye stack up (faye_plugin/stack/airflow.py): the scheduler and Celery workers import
# faye's heavy libraries once, before they fork task processes (faye_plugin/preload.py).
from faye_plugin.preload import install as _faye_preload

_faye_preload()
"""


def write_local_settings(airflow_home: Path) -> Path:
    """Write ``<airflow_home>/config/airflow_local_settings.py`` (Airflow imports it at start)."""
    path = airflow_home / "config" / "airflow_local_settings.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != LOCAL_SETTINGS:
        path.write_text(LOCAL_SETTINGS)
    return path


def seed_password(cfg: StackConfig) -> str:
    """Pre-seed the simple auth manager's passwords file with the faye and viewer users' passwords;
    return the faye user's."""
    held = stack_secrets(cfg)
    wanted = {USERNAME: held["airflow_password"], VIEWER_USERNAME: held["viewer_password"]}
    path = passwords_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        current = None
    if current != wanted:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(wanted, fh)
    return held["airflow_password"]


def ensure_database(cfg: StackConfig) -> None:
    """Create the PostgreSQL database named in ``FAYE_DATABASE_URL`` when it does not exist."""
    if not cfg.database_url or not cfg.database_url.startswith("postgresql"):
        return
    from sqlalchemy.engine import make_url

    url = make_url(cfg.database_url)
    try:
        import psycopg2
    except ImportError:
        raise StackError("FAYE_DATABASE_URL needs psycopg2: run `uv sync --all-extras`") from None
    params = {"host": url.host or "127.0.0.1", "port": url.port or 5432, "user": url.username or "postgres"}
    if url.password:
        params["password"] = url.password
    try:
        conn = psycopg2.connect(dbname="postgres", **params)
    except psycopg2.Error as err:
        raise StackError(f"cannot reach PostgreSQL at {params['host']}:{params['port']}: {err}") from err
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{url.database}"')
    finally:
        conn.close()


def check_redis(cfg: StackConfig) -> None:
    from urllib.parse import urlparse

    url = urlparse(cfg.redis_url)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError as err:
        raise StackError(f"Redis at {cfg.redis_url} does not answer ({err}); set FAYE_REDIS_URL") from err
    if not answer.startswith((b"+PONG", b"-NOAUTH")):
        raise StackError(f"Redis at {cfg.redis_url} answered {answer!r}")


def migrate(cfg: StackConfig, base: dict[str, str]) -> bool:
    """Run ``airflow db migrate`` unless this database was migrated by this Airflow version already."""
    import airflow

    marker = cfg.airflow_home / "migrated.json"
    want = {"db": database_url(cfg), "airflow": airflow.__version__}
    sqlite = cfg.database_url is None
    try:
        done = json.loads(marker.read_text()) == want and (
            not sqlite or (cfg.airflow_home / "airflow.db").exists()
        )
    except (FileNotFoundError, ValueError):
        done = False
    if done:
        return False
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.log_dir / "airflow-db-migrate.log", "ab") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=process_env(cfg, base),
            cwd=cfg.airflow_home,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=False,
        )
    if proc.returncode != 0:
        raise StackError(f"airflow db migrate failed; see {cfg.log_dir / 'airflow-db-migrate.log'}")
    marker.write_text(json.dumps(want))
    return True


def specs(cfg: StackConfig, base: dict[str, str]) -> list[ProcessSpec]:
    env = process_env(cfg, base)
    out = []
    for name, (sub, titles) in COMPONENTS.items():
        out.append(
            ProcessSpec(
                name=name,
                argv=[sys.executable, "-m", "airflow", *sub],
                env=env,
                cwd=cfg.airflow_home,
                log=cfg.log_dir / f"{name}.log",
                titles=titles,
            )
        )
    out += [worker_spec(cfg, base, i) for i in range(1, len(cfg.worker_names()) + 1)]
    return out


class AirflowClient:
    """Just what ``up`` and ``status`` need from Airflow's REST API, through faye's one REST client."""

    def __init__(self, cfg: StackConfig, timeout: float = 5.0) -> None:
        from faye_plugin.airflow_rest import AirflowApiClient

        self.url = cfg.url("airflow")
        self.cfg = cfg
        self.client = AirflowApiClient(self.url, USERNAME, None, timeout=timeout)
        # health is tried once: `up` polls it itself, and `status` must answer at once when it is down
        self.probe = AirflowApiClient(self.url, timeout=timeout, attempts=1)

    def health(self) -> dict[str, str]:
        """Return {"airflow": ..., "airflow_scheduler": ..., ...} from ``/api/v2/monitor/health``."""
        try:
            data = self.probe.health()
        except (FayeError, ValueError):
            data = {}
        out = {"airflow": "healthy" if data else "unhealthy"}
        for key in HEALTH_KEYS:
            status = (data.get(key) or {}).get("status")
            out[f"airflow_{key}"] = "healthy" if status == "healthy" else "unhealthy"
        return out

    def login(self) -> None:
        self.client.password = stack_secrets(self.cfg)["airflow_password"]
        try:
            self.client.version()  # logs in first
        except FayeError as err:
            raise StackError(f"Airflow refused the faye user's password: {err}") from err

    def ensure_pool(self, slots: int) -> bool:
        """Create or resize the pool ``faye_test_servers``; return True when something changed.

        The body is ``faye pool sync``'s (one owner: ``AirflowApiClient.sync_pool``): deferred tasks
        count (a test waiting deferred for a lease keeps its place).
        """
        try:
            return self.client.sync_pool(slots, TEST_SERVERS_POOL)[1]
        except FayeError as err:
            raise StackError(f"cannot set pool {TEST_SERVERS_POOL}: {err}") from err

    def dags(self) -> list[dict[str, Any]]:
        return self.client.dags()

    def import_errors(self) -> list[dict[str, Any]]:
        return self.client.import_errors()

    def wait_dags_loaded(self, timeout: float = 90.0) -> tuple[list[str], list[str]]:
        """Wait until every file in the DAGs folder has a DAG or an import error; return both lists."""
        files = {str(p) for p in self.cfg.dags_folder.glob("*.py") if not p.name.startswith("_")}
        deadline = time.monotonic() + timeout
        while True:
            dags, errors = self.dags(), self.import_errors()
            seen = {d.get("fileloc") for d in dags} | {e.get("filename") for e in errors}
            if files <= seen or time.monotonic() > deadline:
                return sorted(d["dag_id"] for d in dags), sorted(str(e.get("filename")) for e in errors)
            time.sleep(1)

    def unpause_all(self) -> list[str]:
        unpaused = []
        for dag in self.dags():
            if dag.get("is_paused"):
                self.client.set_paused(dag["dag_id"], False)
                unpaused.append(dag["dag_id"])
        return unpaused
