"""The deploy's two queue steps: ``supersede_older_runs`` (first) and ``still_newest`` (the safe point).

- ``supersede_older_runs`` cancels older active deploys of the same (service, pr) that have not reached
  their safe point: the run is set to failed with the note ``superseded by <run>``. Older runs already
  past it are left to finish their writes. Cleanup runs and other DAGs are never touched.
- ``still_newest`` runs right before the first write (``release_slot``). It ends its own run as
  superseded if a newer deploy of the PR exists or Cloud Run records a newer request for the tag;
  it waits (sensor, reschedule mode: no worker slot held) while an older deploy of the PR is inside its
  writes; otherwise it records this run's request on the service and lets the writes begin.

Both reach other runs only through Airflow's REST API (``faye_airflow_api``); the rules themselves are
pure functions in :mod:`faye_plugin.queue`. H5's DAG builder uses :func:`supersede_task` and
:func:`still_newest_task`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator

from faye_plugin.exceptions import SupersededError
from faye_plugin.queue import (
    DEPLOY_DAG,
    SAFE_POINT_TASK_ID,
    SUPERSEDE_TASK_ID,
    RunInfo,
    TagRequest,
    TaskState,
    plan_supersede,
    safe_point_decision,
    same_preview,
    superseded_note,
)

REQUESTS_ANNOTATION = "faye.dev/requests"


def read_requests(annotations: dict[str, str]) -> dict[str, TagRequest]:
    """The newest request per tag recorded on a service (annotation ``faye.dev/requests``)."""
    raw = annotations.get(REQUESTS_ANNOTATION, "")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    found: dict[str, TagRequest] = {}
    for tag, entry in data.items() if isinstance(data, dict) else ():
        if isinstance(entry, dict) and "run_id" in entry and "requested_at" in entry:
            found[tag] = TagRequest(str(entry["run_id"]), float(entry["requested_at"]), entry.get("sha"))
    return found


def write_request(annotations: Any, tag: str, request: TagRequest) -> None:
    """Record ``request`` as the newest for ``tag`` (in place, on a service's annotations map)."""
    current = {
        t: {"run_id": r.run_id, "requested_at": r.requested_at, "sha": r.git_sha}
        for t, r in read_requests(dict(annotations)).items()
    }
    current[tag] = {"run_id": request.run_id, "requested_at": request.requested_at, "sha": request.git_sha}
    annotations[REQUESTS_ANNOTATION] = json.dumps(current, separators=(",", ":"), sort_keys=True)


def _same_preview_tis(client: Any, me: RunInfo, runs: Sequence[RunInfo]) -> dict[str, list[TaskState]]:
    return {r.run_id: client.task_instances(r.dag_id, r.run_id) for r in runs if same_preview(me, r)}


class SupersedeOlderRunsOperator(BaseOperator):
    """Cancel older deploys of the same preview that have not reached their safe point.

    :param airflow_api_conn_id: the connection to Airflow's REST API.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#f0e4ff"

    def __init__(self, *, airflow_api_conn_id: str = "faye_airflow_api", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.airflow_api_conn_id = airflow_api_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from faye_plugin.hooks.airflow_api import AirflowApiHook

        client = AirflowApiHook(self.airflow_api_conn_id).client
        dag_run = context["dag_run"]
        me = client.get_run(dag_run.dag_id, dag_run.run_id)
        runs = client.list_active_runs(DEPLOY_DAG)
        plan = plan_supersede(me, runs, _same_preview_tis(client, me, runs))
        if plan.superseded_by is not None:
            newer = plan.superseded_by
            client.set_note(
                me.dag_id, me.run_id, superseded_note(newer.run_id, "a newer deploy of the same PR")
            )
            raise SupersededError(
                f"a newer deploy of PR {me.pr} exists ({newer.run_id}, sha {newer.git_sha})"
            )
        cancelled = []
        for old in plan.cancel:
            reason = f"a newer deploy of PR {me.pr} (sha {me.git_sha}) was triggered"
            result = client.mark_superseded(old.dag_id, old.run_id, me.run_id, reason)
            self.log.info("Superseded %s (sha %s): now %s", old.run_id, old.git_sha, result.state)
            cancelled.append(old.run_id)
        for old in plan.wait_for:
            self.log.info(
                "%s (sha %s) is past its safe point: it finishes its writes; this run waits at still_newest",
                old.run_id,
                old.git_sha,
            )
        return {"superseded": cancelled, "waiting_for": [r.run_id for r in plan.wait_for]}


class StillNewestSensor(BaseSensorOperator):
    """The safe point before a deploy's writes: proceed, wait for an older deploy, or step aside.

    :param airflow_api_conn_id: the connection to Airflow's REST API.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#f0e4ff"

    def __init__(self, *, airflow_api_conn_id: str = "faye_airflow_api", **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 2.0)
        kwargs.setdefault("timeout", 6 * 3600)
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.airflow_api_conn_id = airflow_api_conn_id

    def _recorded(self, service_name: str, tag: str) -> tuple[Any, Any, TagRequest | None]:
        from faye_plugin.catalogue import load_catalogue
        from faye_plugin.hooks.cloud_run import CloudRunPreviewHook

        target = load_catalogue().service(service_name).cloud_run
        hook = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id)
        service = hook.get_service(project=target.project, region=target.region, service=target.service)
        recorded = None if service is None else read_requests(dict(service.annotations)).get(tag)
        return hook, target, recorded

    def poke(self, context: Any) -> bool:
        from faye_plugin.hooks.airflow_api import AirflowApiHook

        client = AirflowApiHook(self.airflow_api_conn_id).client
        dag_run = context["dag_run"]
        me = client.get_run(dag_run.dag_id, dag_run.run_id)
        if me.service is None or me.pr is None:
            raise ValueError(f"run {me.run_id} has no service/pr in its conf")
        tag = f"pr-{me.pr}"
        hook, target, recorded = self._recorded(me.service, tag)
        runs = client.list_active_runs(DEPLOY_DAG)
        decision = safe_point_decision(me, runs, _same_preview_tis(client, me, runs), recorded)
        self.log.info("Safe point: %s (%s)", decision.action, decision.reason)
        if decision.action == "superseded":
            client.set_note(
                me.dag_id, me.run_id, superseded_note(decision.other_run_id or "?", decision.reason)
            )
            raise SupersededError(decision.reason)
        if decision.action == "wait":
            return False
        request = TagRequest(me.run_id, me.run_after.timestamp(), me.git_sha)
        newer: list[TagRequest] = []

        def record(service: Any) -> tuple[Any, list[str]] | None:
            if service is None:
                return None  # the first deploy creates the service; nothing older can exist on it
            current = read_requests(dict(service.annotations)).get(tag)
            if (
                current is not None
                and current.run_id != me.run_id
                and current.requested_at > request.requested_at
            ):
                newer.append(current)
                return None
            write_request(service.annotations, tag, request)
            return service, ["annotations"]

        started = time.monotonic()
        hook.modify_service(
            project=target.project, region=target.region, service=target.service, change=record
        )
        if newer:
            reason = (
                f"{newer[0].run_id} (sha {newer[0].git_sha}), a newer deploy of PR {me.pr}, got here first"
            )
            client.set_note(me.dag_id, me.run_id, superseded_note(newer[0].run_id, reason))
            raise SupersededError(reason)
        self.log.info(
            "Recorded %s as the newest request for %s in %.2fs", me.run_id, tag, time.monotonic() - started
        )
        return True


def supersede_task(task_id: str = SUPERSEDE_TASK_ID, **kwargs: Any) -> SupersedeOlderRunsOperator:
    """The deploy DAG's first task."""
    kwargs.setdefault("retries", 0)
    return SupersedeOlderRunsOperator(task_id=task_id, **kwargs)


def still_newest_task(task_id: str = SAFE_POINT_TASK_ID, **kwargs: Any) -> StillNewestSensor:
    """The safe-point check, placed right before ``release_slot`` (the first write)."""
    return StillNewestSensor(task_id=task_id, **kwargs)
