"""Airflow's own REST API v2, for tasks and the CLI that must see or stop other runs.

Task code cannot touch Airflow's database (Airflow 3), so superseding a run, reading what another run
is doing, or reading a pool goes through ``/api/v2``. ``AirflowApiClient`` is the plain client (the CLI
builds it from a URL and credentials); ``AirflowApiHook`` builds it from the connection
``faye_airflow_api``: host = the API's base URL (e.g. ``http://127.0.0.1:28700``), login/password for
``POST /auth/token`` (leave them empty when the API needs no token, e.g. all-admins dev mode).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote

import requests
from airflow.sdk import BaseHook

from faye_plugin.exceptions import AirflowApiError
from faye_plugin.queue import ACTIVE_RUN_STATES, RunInfo, TaskState, superseded_note

# Errors worth sending the same request again for (bounded): the API restarting or overloaded.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (requests.ConnectionError, requests.Timeout)
TRANSIENT_STATUSES = frozenset({502, 503, 504})
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value))


def run_from_json(data: dict[str, Any]) -> RunInfo:
    """A RunInfo from one DAGRunResponse."""
    run_after = _time(data.get("run_after")) or _time(data.get("queued_at")) or datetime.fromtimestamp(0)
    return RunInfo(
        dag_id=str(data["dag_id"]),
        run_id=str(data["dag_run_id"]),
        state=str(data.get("state")),
        run_after=run_after,
        conf=dict(data.get("conf") or {}),
        note=data.get("note"),
        logical_date=_time(data.get("logical_date")),
        queued_at=_time(data.get("queued_at")),
        start_date=_time(data.get("start_date")),
        run_type=str(data.get("run_type") or "manual"),
    )


def task_from_json(data: dict[str, Any]) -> TaskState:
    """A TaskState from one TaskInstanceResponse."""
    return TaskState(
        task_id=str(data["task_id"]),
        state=data.get("state"),
        pool=data.get("pool"),
        try_number=int(data.get("try_number") or 0),
        map_index=int(data.get("map_index", -1)),
        start_date=_time(data.get("start_date")),
        end_date=_time(data.get("end_date")),
    )


class AirflowApiClient:
    """A small, typed client of the Airflow REST API v2 (one cached session, a bearer token on demand)."""

    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        timeout: float = 30.0,
        attempts: int = 3,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self.attempts = attempts
        self._token: str | None = None

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Accept"] = "application/json"
        return session

    def _fetch_token(self) -> None:
        if not self.username:
            return
        response = self.session.post(
            f"{self.base_url}/auth/token",
            json={"username": self.username, "password": self.password or ""},
            timeout=self.timeout,
        )
        if response.status_code not in (200, 201):
            raise AirflowApiError(
                f"POST /auth/token as {self.username!r}: HTTP {response.status_code} {response.text[:300]}"
            )
        self._token = str(response.json()["access_token"])
        self.session.headers["Authorization"] = f"Bearer {self._token}"

    def request(
        self, method: str, path: str, *, ok: Iterable[int] = (200,), **kwargs: Any
    ) -> requests.Response:
        """Send a request under ``/api/v2``; refresh the token once on 401; retry transient failures."""
        ok = tuple(ok)
        if self._token is None:
            self._fetch_token()
        url = f"{self.base_url}/api/v2{path}"
        refreshed = False
        for attempt in range(1, self.attempts + 1):
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except TRANSIENT_ERRORS as exc:
                if attempt == self.attempts:
                    raise AirflowApiError(f"{method} {url}: {exc}") from exc
                time.sleep(0.5 * attempt)
                continue
            if response.status_code == 401 and self.username and not refreshed:
                refreshed = True
                self._fetch_token()
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            if response.status_code in TRANSIENT_STATUSES and attempt < self.attempts:
                time.sleep(0.5 * attempt)
                continue
            if response.status_code not in ok:
                raise AirflowApiError(f"{method} {path}: HTTP {response.status_code} {response.text[:500]}")
            return response
        raise AirflowApiError(f"{method} {url}: no answer after {self.attempts} attempts")

    # --- runs ---------------------------------------------------------------------------------------

    def list_runs(
        self, dag_id: str, states: Iterable[str] = ACTIVE_RUN_STATES, limit: int = 100
    ) -> list[RunInfo]:
        """Runs of ``dag_id`` in ``states`` (any state if empty), oldest first; [] for an unknown DAG."""
        params: list[tuple[str, str | int]] = [("limit", limit), ("order_by", "run_after")]
        params += [("state", s) for s in states]
        response = self.request("GET", f"/dags/{quote(dag_id)}/dagRuns", params=params, ok=(200, 404))
        if response.status_code == 404:
            return []
        return [run_from_json(r) for r in response.json().get("dag_runs", [])]

    def list_active_runs(self, dag_id: str) -> list[RunInfo]:
        """Queued and running runs of ``dag_id``, with their conf, run_after and note."""
        return self.list_runs(dag_id, ACTIVE_RUN_STATES)

    def get_run(self, dag_id: str, run_id: str) -> RunInfo:
        response = self.request("GET", f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}")
        return run_from_json(response.json())

    def trigger(
        self, dag_id: str, conf: dict[str, Any], *, run_id: str | None = None, note: str | None = None
    ) -> RunInfo:
        """Trigger a run whose ``logical_date`` is now.

        The scheduler serves a full pool by ``-priority_weight`` then ``logical_date``: a null one has
        no defined order, the trigger time gives equal priorities first come, first served. The run id
        is fixed before the first POST, so a POST answered 500 (SQLite's "database is locked" on a busy
        embedded stack) is sent again safely: a 409 then means the first one landed.
        """
        logical_date = datetime.now(UTC).isoformat()
        run_id = run_id or f"manual__{logical_date}"
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": logical_date, "conf": conf}
        if note:
            body["note"] = note
        path = f"/dags/{quote(dag_id)}/dagRuns"
        for attempt in range(1, 4):
            response = self.request("POST", path, json=body, ok=(200, 201, 409, 500))
            if response.status_code in (200, 201):
                return run_from_json(response.json())
            if response.status_code == 409:
                if attempt > 1:
                    return self.get_run(dag_id, run_id)
                raise AirflowApiError(f"POST {path}: HTTP 409 {response.text[:500]}")
            time.sleep(0.5 * attempt)
        raise AirflowApiError(f"POST {path}: HTTP 500 three times: {response.text[:500]}")

    def patch_run(self, dag_id: str, run_id: str, body: dict[str, Any], **kwargs: Any) -> RunInfo:
        """PATCH a run. Two first notes written at once collide on the note table's unique key (409):
        the loser is sent again (the note row exists by then, so it becomes an update)."""
        path = f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}"
        for attempt in range(1, 4):
            response = self.request("PATCH", path, json=body, ok=(200, 409), **kwargs)
            if response.status_code == 200:
                return run_from_json(response.json())
            time.sleep(0.3 * attempt)
        raise AirflowApiError(f"PATCH {path}: HTTP 409 three times: {response.text[:300]}")

    def set_note(self, dag_id: str, run_id: str, note: str) -> RunInfo:
        return self.patch_run(dag_id, run_id, {"note": note[:1000]}, params={"update_mask": "note"})

    def mark_superseded(
        self,
        dag_id: str,
        run_id: str,
        by_run_id: str,
        reason: str = "",
        *,
        settle_seconds: float = 60.0,
        stable_seconds: float = 4.0,
    ) -> RunInfo:
        """End ``run_id`` as failed with the note ``superseded by <by_run_id>: <reason>``.

        Airflow kills its running tasks (``on_kill``) and skips the rest. The state does not always
        stick: a run with a pending teardown is not set to failed by the PATCH (Airflow waits for the
        teardown, then calls the run a success), and we saw a scheduler loop that held the run write it
        back as running and then, every task being skipped, as success. So the run is watched until it
        has stayed failed for ``stable_seconds`` (re-failed whenever it ends otherwise), for at most
        ``settle_seconds``.
        """
        note = superseded_note(by_run_id, reason)
        run = self.patch_run(dag_id, run_id, {"state": "failed", "note": note})
        deadline = time.monotonic() + settle_seconds
        failed_since = time.monotonic() if run.state == "failed" else None
        while time.monotonic() < deadline:
            if failed_since is not None and time.monotonic() - failed_since >= stable_seconds:
                break
            time.sleep(1.0)
            run = self.get_run(dag_id, run_id)
            if run.state == "failed":
                failed_since = failed_since or time.monotonic()
                continue
            failed_since = None
            if run.state in TERMINAL_RUN_STATES:
                run = self.patch_run(dag_id, run_id, {"state": "failed", "note": note})
                failed_since = time.monotonic() if run.state == "failed" else None
        return run

    # --- task instances, pools, xcom -----------------------------------------------------------------

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskState]:
        response = self.request(
            "GET",
            f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances",
            params={"limit": 500},
        )
        return [task_from_json(t) for t in response.json().get("task_instances", [])]

    def pool(self, name: str) -> dict[str, Any] | None:
        """The pool as the API reports it (slots, open/occupied/running/queued/deferred), None if missing."""
        response = self.request("GET", f"/pools/{quote(name, safe='')}", ok=(200, 404))
        return None if response.status_code == 404 else dict(response.json())

    def pools(self) -> dict[str, dict[str, Any]]:
        response = self.request("GET", "/pools", params={"limit": 100})
        return {p["name"]: p for p in response.json().get("pools", [])}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value (deserialised), or None when there is none."""
        response = self.request(
            "GET",
            f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances/{quote(task_id)}"
            f"/xcomEntries/{quote(key)}",
            params={"deserialize": "true", "stringify": "false"},
            ok=(200, 404),
        )
        return None if response.status_code == 404 else response.json().get("value")


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
        conn = self.get_connection(self.airflow_api_conn_id)
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
            self.client.request("GET", "/version")
        except AirflowApiError as exc:
            return False, str(exc)
        return True, "Airflow REST API reachable"
