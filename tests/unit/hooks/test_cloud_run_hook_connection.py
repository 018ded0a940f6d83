"""The Cloud Run hook reads its connection lazily and points the client where the connection says."""

from __future__ import annotations

import json

import pytest
from google.auth.credentials import AnonymousCredentials

from faye_plugin.hooks.cloud_run import CloudRunPreviewHook


def test_no_connection_is_read_before_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_FAYE_NOWHERE", raising=False)
    hook = CloudRunPreviewHook(gcp_conn_id="faye_nowhere")  # no connection exists: still fine
    with pytest.raises(Exception, match="faye_nowhere"):
        hook.services_client  # noqa: B018 (the first use reads the connection)


def test_emulator_connection_gives_an_anonymous_client_on_its_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra = {"is_anonymous": True, "project": "local", "api_endpoint": "http://127.0.0.1:1"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_FAYE_CLOUD_RUN", json.dumps({"conn_type": "google_cloud_platform", "extra": extra})
    )
    hook = CloudRunPreviewHook()
    client = hook.services_client
    assert client is hook.services_client  # cached
    assert isinstance(client._transport._credentials, AnonymousCredentials)
    assert client._transport._host == "http://127.0.0.1:1"
    assert hook.revisions_client._transport._host == "http://127.0.0.1:1"
    assert hook.project_id == "local"


def test_a_missing_airflow_api_connection_is_an_api_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """``faye doctor --fix`` outside the stack has no ``faye_airflow_api``: repair must see an
    AirflowApiError (and treat claims as live for their grace), not crash on Airflow's not-found."""
    from faye_plugin import repair
    from faye_plugin.exceptions import AirflowApiError
    from faye_plugin.hooks.airflow_api import AirflowApiHook

    monkeypatch.delenv("AIRFLOW_CONN_FAYE_AIRFLOW_API", raising=False)
    with pytest.raises(AirflowApiError, match="'faye_nowhere_api' is not defined"):
        AirflowApiHook("faye_nowhere_api").client  # noqa: B018
    in_flight = repair.deploys_in_flight()
    assert in_flight.deploying is None and in_flight.liveness.active_runs is None
