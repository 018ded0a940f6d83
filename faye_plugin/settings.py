"""faye's runtime settings: the Airflow config section ``[faye]``, read lazily (never at import).

Every value can be set in ``airflow.cfg`` or as ``AIRFLOW__FAYE__<KEY>`` in the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

SECTION = "faye"
TEST_SERVERS_POOL = "faye_test_servers"


def _get(key: str, fallback: str | None = None) -> str | None:
    env = os.environ.get(f"AIRFLOW__{SECTION.upper()}__{key.upper()}")
    if env is not None:
        return env
    from airflow.configuration import conf

    return conf.get(SECTION, key, fallback=fallback)


def catalogue_path() -> Path:
    """Return the path of the service catalogue (``[faye] catalogue``, else ``$FAYE_HOME/catalogue.yaml``)."""
    value = _get("catalogue")
    if value:
        return Path(value)
    return Path(os.environ.get("FAYE_HOME", ".faye")).resolve() / "catalogue.yaml"


def artifacts_dir() -> Path:
    """Return the folder of deploy artifacts: ``[faye] artifacts_dir``, else ``$FAYE_HOME/artifacts``."""
    value = _get("artifacts_dir")
    if value:
        return Path(value)
    return Path(os.environ.get("FAYE_HOME", ".faye")).resolve() / "artifacts"


def deploy_deferrable() -> bool:
    """Return whether deploy_revision waits for Cloud Run in the triggerer (``[faye] deploy_deferrable``)."""
    value = _get("deploy_deferrable", "true")
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def build_queue() -> str | None:
    """Return the Celery queue of the Build group's tasks (``[faye] build_queue``), or None.

    Read when the DAG file is parsed (the queue is part of the serialized task), so every component
    that parses DAGs must see the same value. None leaves the tasks on ``[operators] default_queue``.
    """
    value = (_get("build_queue") or "").strip()
    return value or None


def airflow_url() -> str:
    """Return the Airflow UI's address for links faye gives out (GitHub's ``log_url``).

    ``[faye] airflow_url``, else ``[api] base_url``, else Airflow's own default ``http://localhost:8080``.
    """
    value = _get("airflow_url")
    if not value:
        from airflow.configuration import conf

        value = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
    return str(value).rstrip("/")
