"""docker-compose.yaml cannot run on these machines (no Docker engine); keep it in step with the stack.

The native stack (faye_plugin/stack/airflow.py) with FAYE_EXECUTOR=celery is the tested form of the
same configuration, so the settings that shape faye's behaviour must agree between the two.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from faye_plugin.stack import airflow as stack_airflow
from faye_plugin.stack.config import StackConfig

ROOT = Path(__file__).resolve().parents[2]
SHARED = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
    "AIRFLOW__CORE__PARALLELISM",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME",
)


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_compose_settings_match_the_celery_stack(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAYE_HOME", str(tmp_path))
    monkeypatch.setenv("FAYE_EXECUTOR", "celery")
    monkeypatch.setenv("FAYE_DATABASE_URL", "postgresql+psycopg2://airflow:airflow@127.0.0.1:5432/airflow")
    stack_env = stack_airflow.airflow_env(StackConfig.from_env())
    compose_env = _compose()["x-airflow-common"]["environment"]
    for key in SHARED:
        assert str(compose_env[key]) == stack_env[key], key


def test_every_airflow_component_shares_one_environment() -> None:
    services = _compose()["services"]
    components = {"api-server", "scheduler", "dag-processor", "triggerer", "celery worker"}
    commands = {str(svc.get("command")) for svc in services.values()}
    assert components <= commands
    common = _compose()["x-airflow-common"]["environment"]
    for name, svc in services.items():
        if str(svc.get("command")) in components:
            assert svc["environment"] == common, name
            assert "JWT_SECRET" in str(svc["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"])
