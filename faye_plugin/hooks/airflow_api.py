"""Airflow's own REST API v2, for tasks that must see or stop other runs.

Task code cannot touch Airflow's database (Airflow 3), so superseding a run, reading what another run
is doing, or reading a pool goes through ``/api/v2``. The client is ``faye_plugin.airflow_rest``
(the official ``apache-airflow-client`` with faye's token, retry and types; the CLI and the stack use it
too); ``AirflowApiHook`` builds it from the connection ``faye_airflow_api``: host = the API's base URL
(e.g. ``http://127.0.0.1:28700``), login/password for ``POST /auth/token`` (leave them empty when the
API needs no token, e.g. all-admins dev mode).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from faye_plugin.airflow_rest import (
    TERMINAL_RUN_STATES,
    AirflowApiClient,
    run_from_json,
    task_from_json,
    transient_errors,
)
from faye_plugin.exceptions import AirflowApiError
from faye_plugin.queue import RunInfo, TaskState

__all__ = [
    "TERMINAL_RUN_STATES",
    "AirflowApiClient",
    "AirflowApiHook",
    "run_from_json",
    "task_from_json",
    "transient_errors",
]


class AirflowApiHook(BaseHook):
    """Airflow's REST API v2 through the connection ``faye_airflow_api`` (lazy, cached client)."""

    conn_name_attr = "airflow_api_conn_id"
    default_conn_name = "faye_airflow_api"
    conn_type = "faye_airflow_api"
    hook_name = "faye: Airflow REST API"

    def __init__(self, airflow_api_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.airflow_api_conn_id = airflow_api_conn_id

    @cached_property
    def client(self) -> AirflowApiClient:
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = self.get_connection(self.airflow_api_conn_id)
        except AirflowNotFoundException as exc:
            raise AirflowApiError(
                f"connection {self.airflow_api_conn_id!r} is not defined (faye stack up creates it; "
                "elsewhere add it: host = the API's base URL, login/password of a user who may trigger runs)"
            ) from exc
        host = str(conn.host or "")
        if not host:
            raise AirflowApiError(f"connection {self.airflow_api_conn_id!r} needs a host (the API base URL)")
        if "://" not in host:
            host = f"{conn.schema or 'http'}://{host}"
        if conn.port:
            host = f"{host.rstrip('/')}:{conn.port}"
        return AirflowApiClient(host, conn.login or None, conn.password or None)

    def get_conn(self) -> AirflowApiClient:
        return self.client

    def list_active_runs(self, dag_id: str) -> list[RunInfo]:
        return self.client.list_active_runs(dag_id)

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskState]:
        return self.client.task_instances(dag_id, run_id)

    def mark_superseded(self, dag_id: str, run_id: str, by_run_id: str, reason: str = "") -> RunInfo:
        return self.client.mark_superseded(dag_id, run_id, by_run_id, reason)

    def set_note(self, dag_id: str, run_id: str, note: str) -> RunInfo:
        return self.client.set_note(dag_id, run_id, note)

    def pool(self, name: str) -> dict[str, Any] | None:
        return self.client.pool(name)

    def test_connection(self) -> tuple[bool, str]:
        try:
            version = self.client.version()
        except AirflowApiError as exc:
            return False, str(exc)
        return True, f"Airflow REST API reachable (Airflow {version})"
