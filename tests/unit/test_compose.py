"""docker-compose.yaml and the Dockerfile: in step with the stack, and complete for a new user.

The native stack (faye_plugin/stack/airflow.py) with FAYE_EXECUTOR=celery is the tested form of the
same configuration (tests/integration/test_celery_stack.py), so the settings that shape faye's
behaviour must agree between the two. The rest checks what a first ``docker compose up`` needs and
that a single run would otherwise have shown missing: the password reaching the api-server through a
shared volume, the ``faye_airflow_api`` connection, a health check on every service, the example
configuration folder, and an image that installs faye at build time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from faye_plugin.catalogue import load_catalogue
from faye_plugin.stack import airflow as stack_airflow
from faye_plugin.stack.config import StackConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "compose"
SHARED = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
    "AIRFLOW__CORE__PARALLELISM",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME",
)
# Not shared on purpose: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS (the local stack adds a read-only
# user, faye-viewer, for its tests of the previews page's permissions; compose has only faye).
COMPONENTS = {
    "api-server": "airflow-api-server",
    "scheduler": "airflow-scheduler",
    "dag-processor": "airflow-dag-processor",
    "triggerer": "airflow-triggerer",
    "celery worker": "airflow-worker",
}
# what the user sets (examples/compose/.env.example) and compose substitutes
SUBSTITUTED = {
    "FAYE_FERNET_KEY": "fernet",
    "FAYE_JWT_SECRET": "jwt",
    "FAYE_API_SECRET_KEY": "api-key",
    "FAYE_AIRFLOW_PASSWORD": "s3cret-pw",
    "AIRFLOW_UID": "1000",
}


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def _substitute(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` (``$$`` is a literal ``$``)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        if op == ":-":
            return arg or ""
        raise AssertionError(f"{name} is required: {arg}")

    value = re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value.replace("$$", "\0"))
    return value.replace("\0", "$")


def _service_env(name: str) -> dict[str, str]:
    env = _compose()["services"][name]["environment"]
    return {k: _substitute(str(v), SUBSTITUTED) for k, v in env.items()}


def test_compose_settings_match_the_celery_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAYE_HOME", str(tmp_path))
    monkeypatch.setenv("FAYE_EXECUTOR", "celery")
    monkeypatch.setenv("FAYE_DATABASE_URL", "postgresql+psycopg2://airflow:airflow@127.0.0.1:5432/airflow")
    stack_env = stack_airflow.airflow_env(StackConfig.from_env())
    compose_env = _compose()["x-airflow-common"]["environment"]
    for key in SHARED:
        assert str(compose_env[key]) == stack_env[key], key
    # the same connection ids as the stack's, each given to every component
    stack_conns = {k for k in stack_env if k.startswith("AIRFLOW_CONN_")}
    example_conns = {line.split("=", 1)[0] for line in _env_file_lines()}
    assert stack_conns - {"AIRFLOW_CONN_FAYE_AIRFLOW_API"} <= example_conns
    assert "AIRFLOW_CONN_FAYE_AIRFLOW_API" in compose_env


def test_every_airflow_component_shares_one_environment_and_has_a_health_check() -> None:
    compose = _compose()
    services = compose["services"]
    by_command = {str(svc.get("command")): name for name, svc in services.items()}
    assert {c: by_command.get(c) for c in COMPONENTS} == COMPONENTS
    common = compose["x-airflow-common"]["environment"]
    for name, svc in services.items():
        if name in COMPONENTS.values():
            assert svc["environment"].items() >= common.items(), name
            assert "JWT_SECRET" in str(svc["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"])
            assert svc["env_file"] == compose["x-airflow-common"]["env_file"], name
            assert svc["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
        if name != "airflow-init":
            test = svc["healthcheck"]["test"]
            assert test[0] in ("CMD", "CMD-SHELL") and len(" ".join(test)) > 10, name


def test_the_password_reaches_the_api_server_through_a_shared_volume() -> None:
    compose = _compose()
    services = compose["services"]
    passwords = Path(_service_env("airflow-api-server")["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    init_script = "\n".join(services["airflow-init"]["command"])
    # airflow-init writes the file ...
    assert str(passwords) in init_script and "FAYE_AIRFLOW_PASSWORD" in init_script
    assert "FAYE_AIRFLOW_PASSWORD" in services["airflow-init"]["environment"]

    def mount_of(service: dict[str, Any]) -> str | None:
        for volume in service["volumes"]:
            source, target = str(volume).split(":")[:2]
            if passwords.is_relative_to(target):
                return source
        return None

    # ... on a named volume, which the api-server mounts at the same place
    source = mount_of(services["airflow-init"])
    assert source in compose["volumes"], "the passwords file must be on a named (shared) volume"
    assert mount_of(services["airflow-api-server"]) == source


def test_the_airflow_api_connection_logs_in_as_the_faye_user() -> None:
    env = _service_env("airflow-worker")
    conn = json.loads(env["AIRFLOW_CONN_FAYE_AIRFLOW_API"])
    assert conn["conn_type"] == "faye_airflow_api"
    assert conn["host"] == "http://airflow-api-server:8080"
    users = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    assert conn["login"] == users.split(":")[0] and conn["password"] == SUBSTITUTED["FAYE_AIRFLOW_PASSWORD"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith(conn["host"])


def test_files_are_owned_by_airflow_uid_and_init_runs_as_root() -> None:
    compose = _compose()
    assert compose["x-airflow-common"]["user"] == "${AIRFLOW_UID:-50000}:0"
    assert compose["services"]["airflow-init"]["user"] == "0:0"
    assert "AIRFLOW_UID" in "\n".join(compose["services"]["airflow-init"]["command"])
    assert _compose()["services"]["airflow-init"]["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"


def test_the_image_is_built_from_the_dockerfile_which_installs_faye() -> None:
    compose = _compose()
    common = compose["x-airflow-common"]
    assert common["build"] == "."
    for svc in compose["services"].values():
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in (svc.get("environment") or {})
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    assert froms == ["${AIRFLOW_IMAGE}"] and args["AIRFLOW_IMAGE"] == "apache/airflow:3.3.2-python3.11"
    install = r'pip install .*"apache-airflow==\$\{AIRFLOW_VERSION\}".*"/opt/faye\[production\]"'
    assert re.search(install, text)
    copied = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)\s+\S+$", text, re.M)
    for sources in copied:
        for source in sources.split():
            assert (ROOT / source).exists(), source


def _env_file_lines() -> list[str]:
    text = (EXAMPLE / "connections.env").read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_example_folder_has_what_compose_mounts_and_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = _compose()
    common = compose["x-airflow-common"]
    defaults = {"FAYE_CONFIG_DIR": "./examples/compose", "AIRFLOW_PROJ_DIR": "."}
    env_file = ROOT / _substitute(common["env_file"][0], defaults)
    assert env_file == EXAMPLE / "connections.env"
    for line in _env_file_lines():
        key, _, value = line.partition("=")
        assert key.startswith("AIRFLOW_CONN_") and json.loads(value)["conn_type"], line
    volumes = [_substitute(str(v), defaults).split(":") for v in common["volumes"]]
    mounts = {target: source for source, target, *_ in volumes}
    config_dir = (ROOT / mounts["/opt/faye-config"]).resolve()
    assert config_dir == EXAMPLE
    assert (ROOT / mounts["/opt/airflow/dags"] / "faye_deploy.py").exists()
    # the catalogue the containers are told to read is there, valid, and names every connection it uses
    in_container = Path(common["environment"]["AIRFLOW__FAYE__CATALOGUE"])
    path = config_dir / in_container.relative_to("/opt/faye-config")
    monkeypatch.setenv("AIRFLOW__FAYE__CATALOGUE", str(path))
    catalogue = load_catalogue()
    conn_ids = {line.split("=", 1)[0].removeprefix("AIRFLOW_CONN_").lower() for line in _env_file_lines()}
    for spec in catalogue.services.values():
        assert {spec.cloud_run.gcp_conn_id, spec.registry_conn_id, spec.proxy_conn_id} <= conn_ids
        for ref in spec.secret_env.values():
            assert ref.split(":")[1] in conn_ids, ref
    assert catalogue.builder is not None and catalogue.builder.docker_url.startswith("tcp://")
    for host in (catalogue.builder, *catalogue.test_servers):
        assert host.tls_ca_cert and host.tls_ca_cert.startswith("/opt/faye-config/")
    # every variable compose needs from the user is in .env.example
    example_env = (EXAMPLE / ".env.example").read_text()
    needed = set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.yaml").read_text()))
    assert needed and all(re.search(rf"^{name}=", example_env, re.M) for name in needed | {"AIRFLOW_UID"})
