"""Airflow's REST API v2 through the official client (``apache-airflow-client``): faye's one REST client.

The CLI, the local stack and the hook ``hooks/airflow_api.AirflowApiHook`` all use ``AirflowApiClient``.
It wraps ``airflow_client.client`` (typed calls, one urllib3 pool, a bearer token) and adds what faye
needs on top: the JWT token from ``POST /auth/token`` (the auth manager's endpoint, outside the
generated API, sent through the same ``ApiClient``), one refresh of it on a 401, faye's one retry policy
(``faye_plugin.retries``) on an explicit list of transient errors, and answers as faye's own types
(``RunInfo``, ``TaskState``, plain dicts). urllib3's own retries are switched off so that policy is the
only one.

This module imports no Airflow (``airflow.sdk`` costs seconds): ``faye stack status`` and the CLI pay
only for the client itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from faye_plugin.exceptions import AirflowApiError
from faye_plugin.queue import ACTIVE_RUN_STATES, RunInfo, TaskState, superseded_note
from faye_plugin.retries import DEFAULT_POLICY, TRANSIENT_STATUSES, RetryPolicy
from faye_plugin.settings import TEST_SERVERS_POOL

if TYPE_CHECKING:
    from airflow_client.client import ApiClient

T = TypeVar("T")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
POOL_DESCRIPTION = "faye test servers: one slot per server of the catalogue (faye pool sync)"


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth sending the same request again for: the API unreachable, reset or slow to answer.

    (urllib3's, as the official client raises them with urllib3's retries off.) Answers 502/503/504
    (the API restarting or overloaded behind a proxy) are transient too, see ``_transient_answer``.
    """
    import urllib3.exceptions as u3

    return (u3.NewConnectionError, u3.ProtocolError, u3.TimeoutError)


def _transient_answer(error: BaseException) -> bool:
    from airflow_client.client.exceptions import ApiException

    return isinstance(error, ApiException) and error.status in TRANSIENT_STATUSES


def _value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def run_from_json(data: dict[str, Any]) -> RunInfo:
    """A RunInfo from one DAGRunResponse (the wire dict or the client's model dumped)."""
    run_after = _time(data.get("run_after")) or _time(data.get("queued_at")) or datetime.fromtimestamp(0)
    return RunInfo(
        dag_id=str(data["dag_id"]),
        run_id=str(data["dag_run_id"]),
        state=str(_value(data.get("state"))),
        run_after=run_after,
        conf=dict(data.get("conf") or {}),
        note=data.get("note"),
        logical_date=_time(data.get("logical_date")),
        queued_at=_time(data.get("queued_at")),
        start_date=_time(data.get("start_date")),
        run_type=str(_value(data.get("run_type")) or "manual"),
    )


def task_from_json(data: dict[str, Any]) -> TaskState:
    """A TaskState from one TaskInstanceResponse (the wire dict or the client's model dumped)."""
    state = _value(data.get("state"))
    return TaskState(
        task_id=str(data["task_id"]),
        state=None if state is None else str(state),
        pool=data.get("pool"),
        try_number=int(data.get("try_number") or 0),
        map_index=int(data.get("map_index", -1)),
        start_date=_time(data.get("start_date")),
        end_date=_time(data.get("end_date")),
    )


def _dump(model: Any) -> dict[str, Any]:
    """A response model as the API's JSON dict (enums as their values, datetimes as ISO strings)."""
    return dict(model.model_dump(mode="json", by_alias=True))


class RawAnswer:
    """An answer of :meth:`AirflowApiClient.request`: ``status_code``, ``text`` and ``json()``."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.content = body
        self.text = body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.text) if self.text else None


class AirflowApiClient:
    """A typed client of the Airflow REST API v2 over the official client (token on demand).

    :param base_url: the API server's base URL (``http://127.0.0.1:28700``).
    :param username: the user for ``POST /auth/token``; None when the API needs no token.
    :param password: that user's password.
    :param timeout: seconds per request.
    :param attempts: tries per request on a transient error (``faye_plugin.retries``).
    """

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
    def api(self) -> ApiClient:
        """The official client's ``ApiClient`` (one connection pool; urllib3 retries off)."""
        from airflow_client.client import ApiClient, Configuration

        configuration = Configuration(host=self.base_url, retries=False)
        return ApiClient(configuration)

    @property
    def policy(self) -> RetryPolicy:
        return DEFAULT_POLICY.with_attempts(self.attempts)

    # --- token and the one way every call goes ------------------------------------------------------

    def _login(self) -> None:
        """Fetch a JWT from ``POST /auth/token`` and use it for every later call."""
        answer = self._raw(
            "POST",
            f"{self.base_url}/auth/token",
            {"username": self.username, "password": self.password or ""},
        )
        if answer.status_code not in (200, 201):
            raise AirflowApiError(
                f"POST /auth/token as {self.username!r}: HTTP {answer.status_code} {answer.text[:300]}"
            )
        self._token = str(answer.json()["access_token"])
        self.api.configuration.access_token = self._token

    def _raw(self, method: str, url: str, body: Any = None) -> RawAnswer:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._token and not url.endswith("/auth/token"):
            headers["Authorization"] = f"Bearer {self._token}"

        def once() -> RawAnswer:
            response = self.api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=self.timeout
            )
            return RawAnswer(response.status, response.read() or b"")

        try:
            return self.policy.call(
                once,
                transient_errors(),
                what=f"{method} {url}",
                transient_result=lambda a: a.status_code in TRANSIENT_STATUSES,
            )
        except transient_errors() as exc:
            raise AirflowApiError(f"{method} {url}: {exc}") from exc

    def _send(
        self,
        what: str,
        call: Callable[[], T],
        *,
        auth: bool = True,
        resend_on: tuple[type[BaseException], ...] = (),
    ) -> T:
        """Make one typed call: log in first, log in again once on a 401, retry what is transient.

        Errors come out as the official client raised them (``ApiException`` and its subclasses, or
        urllib3's after the last try); :meth:`_call` turns them into ``AirflowApiError``.
        """
        from airflow_client.client.exceptions import UnauthorizedException

        if auth and self.username and self._token is None:
            self._login()

        def once() -> T:
            try:
                return call()
            except UnauthorizedException:
                if not (auth and self.username):
                    raise
                self._login()
                return call()

        return self.policy.call(
            once, transient_errors() + resend_on, transient_error=_transient_answer, what=what
        )

    def _call(self, what: str, call: Callable[[], T], *, auth: bool = True, missing: Any = ...) -> T:
        """:meth:`_send`, with every error as ``AirflowApiError``; a 404 returns ``missing`` if given."""
        from airflow_client.client.exceptions import ApiException

        try:
            return self._send(what, call, auth=auth)
        except ApiException as err:
            if err.status == 404 and missing is not ...:
                return missing
            raise AirflowApiError(
                f"{what}: HTTP {err.status} {(err.body or err.reason or '')[:500]}"
            ) from err
        except transient_errors() as err:
            raise AirflowApiError(f"{what}: {self.base_url} unreachable: {err}") from err

    def request(self, method: str, path: str, *, ok: Iterable[int] = (200,), **kwargs: Any) -> RawAnswer:
        """Send ``method /api/v2<path>`` through the same client (token, retries) for an endpoint the
        typed methods do not cover; ``params=`` and ``json=`` as in requests. Raises unless the
        status is in ``ok``."""
        if self.username and self._token is None:
            self._login()
        params = kwargs.pop("params", None)
        query = f"?{urlencode(params, doseq=True)}" if params else ""
        url, body = f"{self.base_url}/api/v2{path}{query}", kwargs.pop("json", None)
        answer = self._raw(method, url, body)
        if answer.status_code == 401 and self.username:
            self._login()
            answer = self._raw(method, url, body)
        if answer.status_code not in tuple(ok):
            raise AirflowApiError(f"{method} {path}: HTTP {answer.status_code} {answer.text[:500]}")
        return answer

    # --- the typed APIs -----------------------------------------------------------------------------

    @cached_property
    def _runs(self) -> Any:
        from airflow_client.client import DagRunApi

        return DagRunApi(self.api)

    @cached_property
    def _tis(self) -> Any:
        from airflow_client.client import TaskInstanceApi

        return TaskInstanceApi(self.api)

    @cached_property
    def _pools(self) -> Any:
        from airflow_client.client import PoolApi

        return PoolApi(self.api)

    @cached_property
    def _dags(self) -> Any:
        from airflow_client.client import DAGApi

        return DAGApi(self.api)

    # --- runs ---------------------------------------------------------------------------------------

    def list_runs(
        self, dag_id: str, states: Iterable[str] = ACTIVE_RUN_STATES, limit: int = 100
    ) -> list[RunInfo]:
        """Runs of ``dag_id`` in ``states`` (any state if empty), oldest first; [] for an unknown DAG."""
        wanted = list(states) or None
        answer = self._call(
            f"GET /dags/{dag_id}/dagRuns",
            lambda: self._runs.get_dag_runs(
                dag_id, limit=limit, order_by=["run_after"], state=wanted, _request_timeout=self.timeout
            ),
            missing=None,
        )
        return [] if answer is None else [run_from_json(_dump(r)) for r in answer.dag_runs]

    def list_active_runs(self, dag_id: str) -> list[RunInfo]:
        """Queued and running runs of ``dag_id``, with their conf, run_after and note."""
        return self.list_runs(dag_id, ACTIVE_RUN_STATES)

    def get_run(self, dag_id: str, run_id: str) -> RunInfo:
        answer = self._call(
            f"GET /dags/{dag_id}/dagRuns/{run_id}",
            lambda: self._runs.get_dag_run(dag_id, run_id, _request_timeout=self.timeout),
        )
        return run_from_json(_dump(answer))

    def find_run(self, dag_id: str, run_id: str) -> RunInfo | None:
        """The run, or None when ``dag_id`` has no run ``run_id``."""
        answer = self._call(
            f"GET /dags/{dag_id}/dagRuns/{run_id}",
            lambda: self._runs.get_dag_run(dag_id, run_id, _request_timeout=self.timeout),
            missing=None,
        )
        return None if answer is None else run_from_json(_dump(answer))

    def trigger(
        self, dag_id: str, conf: dict[str, Any], *, run_id: str | None = None, note: str | None = None
    ) -> RunInfo:
        """Trigger a run whose ``logical_date`` is now.

        The scheduler serves a full pool by ``-priority_weight`` then ``logical_date``: a null one has
        no defined order, the trigger time gives equal priorities first come, first served. The run id
        is fixed before the first POST, so a POST answered 5xx (SQLite's "database is locked" gives a
        500 on a busy embedded stack) is sent again safely: a 409 then means the first one landed.
        """
        from airflow_client.client import TriggerDAGRunPostBody
        from airflow_client.client.exceptions import ApiException, ConflictException, ServiceException

        logical_date = datetime.now(UTC)
        run_id = run_id or f"manual__{logical_date.isoformat()}"
        body = TriggerDAGRunPostBody(dag_run_id=run_id, logical_date=logical_date, conf=conf, note=note)
        what = f"POST /dags/{dag_id}/dagRuns"
        posts = 0

        def post() -> Any:
            nonlocal posts
            posts += 1
            try:
                return self._runs.trigger_dag_run(dag_id, body, _request_timeout=self.timeout)
            except ConflictException:
                if posts > 1:
                    return None  # an earlier POST of this run id landed
                raise

        try:
            answer = self._send(what, post, resend_on=(ServiceException,))
        except ApiException as err:
            raise AirflowApiError(
                f"{what}: HTTP {err.status} {(err.body or err.reason or '')[:500]}"
            ) from err
        except transient_errors() as err:
            raise AirflowApiError(f"{what}: {self.base_url} unreachable: {err}") from err
        return self.get_run(dag_id, run_id) if answer is None else run_from_json(_dump(answer))

    def patch_run(self, dag_id: str, run_id: str, body: dict[str, Any], **kwargs: Any) -> RunInfo:
        """PATCH a run (``body``: ``state`` and/or ``note``; ``params={"update_mask": ...}`` to limit
        it). Two first notes written at once collide on the note table's unique key (409): the loser
        is sent again (the note row exists by then, so it becomes an update). A 500 is sent again too:
        the PATCH is idempotent, and the embedded stack's SQLite answers one when a writer held its
        lock past the busy timeout."""
        from airflow_client.client import DAGRunPatchBody
        from airflow_client.client.exceptions import ApiException, ConflictException, ServiceException

        mask = (kwargs.get("params") or {}).get("update_mask")
        update_mask = [mask] if isinstance(mask, str) else mask
        patch = DAGRunPatchBody.from_dict(body)
        what = f"PATCH /dags/{dag_id}/dagRuns/{run_id}"
        try:
            answer = self._send(
                what,
                lambda: self._runs.patch_dag_run(
                    dag_id, run_id, patch, update_mask=update_mask, _request_timeout=self.timeout
                ),
                resend_on=(ConflictException, ServiceException),
            )
        except ApiException as err:
            raise AirflowApiError(
                f"{what}: HTTP {err.status} {(err.body or err.reason or '')[:300]}"
            ) from err
        except transient_errors() as err:
            raise AirflowApiError(f"{what}: {self.base_url} unreachable: {err}") from err
        return run_from_json(_dump(answer))

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
        back as running and then, every task being skipped, as success. So the run is watched (a poll,
        not a retry) until it has stayed failed for ``stable_seconds`` (re-failed whenever it ends
        otherwise), for at most ``settle_seconds``.
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

    # --- task instances, logs, xcom -----------------------------------------------------------------

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskState]:
        answer = self._call(
            f"GET /dags/{dag_id}/dagRuns/{run_id}/taskInstances",
            lambda: self._tis.get_task_instances(dag_id, run_id, limit=500, _request_timeout=self.timeout),
        )
        return [task_from_json(_dump(t)) for t in answer.task_instances]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int, token: str | None = None
    ) -> tuple[list[Any], str | None]:
        """One read of a try's log: (entries as dicts or strings, continuation token or None)."""
        answer = self._call(
            f"GET /dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            lambda: self._tis.get_log(
                dag_id, run_id, task_id, try_number, token=token, _request_timeout=self.timeout
            ),
        )
        content = answer.content.actual_instance if answer.content is not None else None
        entries = [e.to_dict() if hasattr(e, "to_dict") else e for e in content or []]
        return entries, answer.continuation_token

    def dag_tasks(self, dag_id: str) -> dict[str, list[str]]:
        """Each task of ``dag_id`` with its downstream task ids."""
        from airflow_client.client import TaskApi

        answer = self._call(
            f"GET /dags/{dag_id}/tasks",
            lambda: TaskApi(self.api).get_tasks(dag_id, _request_timeout=self.timeout),
        )
        return {str(t.task_id): list(t.downstream_task_ids or []) for t in answer.tasks}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value (deserialised), or None when there is none."""
        from airflow_client.client import XComApi

        answer = self._call(
            f"GET /dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            lambda: XComApi(self.api).get_xcom_entry(
                dag_id, task_id, run_id, key, deserialize=True, stringify=False, _request_timeout=self.timeout
            ),
            missing=None,
        )
        entry = None if answer is None else answer.actual_instance
        return None if entry is None else entry.value

    # --- pools ----------------------------------------------------------------------------------------

    def pool(self, name: str) -> dict[str, Any] | None:
        """The pool as the API reports it (slots, open/occupied/running/queued/deferred), None if missing."""
        answer = self._call(
            f"GET /pools/{name}",
            lambda: self._pools.get_pool(name, _request_timeout=self.timeout),
            missing=None,
        )
        return None if answer is None else _dump(answer)

    def pools(self) -> dict[str, dict[str, Any]]:
        answer = self._call(
            "GET /pools", lambda: self._pools.get_pools(limit=100, _request_timeout=self.timeout)
        )
        return {p.name: _dump(p) for p in answer.pools}

    def sync_pool(
        self, slots: int, name: str = TEST_SERVERS_POOL, description: str = POOL_DESCRIPTION
    ) -> tuple[dict[str, Any], bool]:
        """Create or resize the pool to ``slots`` slots, deferred tasks counted (a test waiting deferred
        for a lease keeps its place); return (the pool, whether anything changed). 3.3's PATCH is sent
        the full body."""
        from airflow_client.client import PoolBody, PoolPatchBody

        current = self.pool(name)
        if current is not None and current.get("slots") == slots and current.get("include_deferred") is True:
            return current, False
        if current is None:
            body = PoolBody(name=name, slots=slots, description=description, include_deferred=True)
            answer = self._call(
                "POST /pools", lambda: self._pools.post_pool(body, _request_timeout=self.timeout)
            )
        else:
            patch = PoolPatchBody(pool=name, slots=slots, description=description, include_deferred=True)
            answer = self._call(
                f"PATCH /pools/{name}",
                lambda: self._pools.patch_pool(name, patch, _request_timeout=self.timeout),
            )
        return _dump(answer), True

    # --- DAGs and the server ----------------------------------------------------------------------------

    def dags(self) -> list[dict[str, Any]]:
        """Every DAG (``dag_id``, ``fileloc``, ``is_paused``, ...)."""
        answer = self._call(
            "GET /dags", lambda: self._dags.get_dags(limit=1000, _request_timeout=self.timeout)
        )
        return [_dump(d) for d in answer.dags]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        from airflow_client.client import DAGPatchBody

        self._call(
            f"PATCH /dags/{dag_id}",
            lambda: self._dags.patch_dag(
                dag_id, DAGPatchBody(is_paused=paused), _request_timeout=self.timeout
            ),
        )

    def import_errors(self) -> list[dict[str, Any]]:
        from airflow_client.client import ImportErrorApi

        answer = self._call(
            "GET /importErrors",
            lambda: ImportErrorApi(self.api).get_import_errors(limit=1000, _request_timeout=self.timeout),
        )
        return [_dump(e) for e in answer.import_errors]

    def health(self) -> dict[str, Any]:
        """``GET /api/v2/monitor/health`` (no token needed)."""
        from airflow_client.client import MonitorApi

        answer = self._call(
            "GET /monitor/health",
            lambda: MonitorApi(self.api).get_health(_request_timeout=self.timeout),
            auth=False,
        )
        return _dump(answer)

    def version(self) -> str:
        from airflow_client.client import VersionApi

        answer = self._call(
            "GET /version", lambda: VersionApi(self.api).get_version(_request_timeout=self.timeout)
        )
        return str(answer.version)
