"""Is a test-server lease's holder alive? Its task instance's state, through Airflow's REST API.

A lease names its holder ``<dag_id>/<run_id>/<task_id>/<try>`` (``faye_plugin.hooks.test_servers``).
The holder is alive while that task instance is on that try and in a state that still runs (or will
run) its code. Airflow notices a task process that died: its supervisor reports the task failed
within a second or two of a SIGKILL (and the scheduler fails a task whose whole worker died once its
heartbeat times out). So a lease lives exactly as long as its holder, with no timeout to guess.

The REST calls use the official ``airflow_client`` (the connection ``faye_airflow_api``: host = the
API's base URL, login/password for ``POST /auth/token``, empty when the API needs no token).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from airflow_client.client.api.task_instance_api import TaskInstanceApi

log = logging.getLogger(__name__)

#: Task-instance states in which the holder's try still runs (or resumes) its code.
ALIVE_STATES = frozenset({"running", "deferred", "queued", "scheduled", "up_for_reschedule", "restarting"})


@dataclass(frozen=True)
class TaskHolder:
    """The task instance (one try) named by a lease's holder label."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int

    @classmethod
    def parse(cls, holder: str) -> TaskHolder | None:
        """The task instance of ``holder``; None for holders that are not one (a person, a test)."""
        parts = holder.split("/")
        if len(parts) != 4 or not all(parts) or not parts[3].isdigit():
            return None
        return cls(parts[0], parts[1], parts[2], int(parts[3]))

    def __str__(self) -> str:
        return f"{self.dag_id}/{self.run_id}/{self.task_id}/{self.try_number}"


def holder_alive(holder: TaskHolder, state: str | None, try_number: int | None) -> bool:
    """Whether ``holder`` still runs, given its task instance's current state and try (None: no TI)."""
    if try_number is None or try_number != holder.try_number:
        return False  # the run or task is gone, or a later try runs now: this try is over
    return state in ALIVE_STATES


class LeaseHolderHook(BaseHook):
    """Read the state of a lease holder's task instance (lazy, cached REST client).

    :param airflow_api_conn_id: the connection to Airflow's REST API.
    :param timeout: seconds for each REST call.
    """

    conn_name_attr = "airflow_api_conn_id"
    default_conn_name = "faye_airflow_api"
    conn_type = "faye_airflow_api"
    hook_name = "faye: lease holders (Airflow REST API)"

    def __init__(self, airflow_api_conn_id: str = default_conn_name, timeout: float = 10.0) -> None:
        super().__init__()
        self.airflow_api_conn_id = airflow_api_conn_id
        self.timeout = timeout

    @cached_property
    def task_instances(self) -> TaskInstanceApi:
        """The client's TaskInstance API, logged in once (the token lasts a day)."""
        from airflow_client.client import ApiClient, Configuration
        from airflow_client.client.api.task_instance_api import TaskInstanceApi

        conn = self.get_connection(self.airflow_api_conn_id)
        host = str(conn.host or "")
        if "://" not in host:
            host = f"{conn.schema or 'http'}://{host}"
        if conn.port:
            host = f"{host.rstrip('/')}:{conn.port}"
        host = host.rstrip("/")
        token = None
        if conn.login:
            answer = requests.post(
                f"{host}/auth/token",
                json={"username": conn.login, "password": conn.password or ""},
                timeout=self.timeout,
            )
            answer.raise_for_status()
            token = str(answer.json()["access_token"])
        return TaskInstanceApi(ApiClient(Configuration(host=host, access_token=token)))

    def get_conn(self) -> TaskInstanceApi:
        return self.task_instances

    def is_alive(self, holder: TaskHolder) -> bool:
        """Whether ``holder`` still runs. When Airflow cannot be asked, it counts as alive: a lease is
        never taken from a holder that may still run (the next look asks again)."""
        from airflow.sdk.exceptions import AirflowNotFoundException
        from airflow_client.client.exceptions import ApiException, NotFoundException, UnauthorizedException
        from urllib3.exceptions import HTTPError

        for attempt in (1, 2):
            try:
                ti = self.task_instances.get_task_instance(
                    holder.dag_id, holder.run_id, holder.task_id, _request_timeout=self.timeout
                )
            except NotFoundException:
                return holder_alive(holder, None, None)
            except UnauthorizedException:
                if attempt == 1:  # the token expired: log in again, once
                    self.__dict__.pop("task_instances", None)
                    continue
                log.warning("cannot ask Airflow about lease holder %s: unauthorized", holder)
                return True
            except (
                ApiException,
                AirflowNotFoundException,
                HTTPError,
                requests.RequestException,
                OSError,
            ) as err:
                log.warning("cannot ask Airflow about lease holder %s (%s): counted as alive", holder, err)
                return True
            state = _state(ti.state)
            return holder_alive(holder, state, ti.try_number)
        return True


def _state(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))
