"""The deploy's two queue steps: ``supersede_older_runs`` (first) and ``still_newest`` (the safe point).

- ``supersede_older_runs`` cancels older active deploys of the same (service, pr) that have not reached
  their safe point: the run is set to failed with the note ``superseded by <run>``. Older runs already
  past it are left to finish their writes. Cleanup runs and other DAGs are never touched.
- ``still_newest`` runs right before the first write (``release_slot``). It ends its own run as
  superseded if a newer deploy of the PR exists or Cloud Run records a newer request for the tag;
  it waits (deferred between looks: no worker slot held) while an older deploy of the PR is inside its
  writes; otherwise it records this run's request on the service and lets the writes begin.

Both reach other runs only through Airflow's REST API (``faye_airflow_api``); the rules themselves are
pure functions in :mod:`faye_plugin.queue`. H5's DAG builder uses :func:`supersede_task` and
:func:`still_newest_task`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, PokeReturnValue

from faye_plugin.exceptions import SlotBusyError, SupersededError
from faye_plugin.queue import (
    DEPLOY_DAG,
    SAFE_POINT_TASK_ID,
    SUPERSEDE_TASK_ID,
    RunInfo,
    TagRequest,
    TaskState,
    claim_decision,
    claim_holders,
    in_critical_section,
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
            claimed_at = entry.get("claimed_at")
            found[tag] = TagRequest(
                str(entry["run_id"]),
                float(entry["requested_at"]),
                entry.get("sha"),
                entry.get("slot"),
                float(claimed_at) if claimed_at is not None else None,
            )
    return found


def _request_json(request: TagRequest) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run_id": request.run_id,
        "requested_at": request.requested_at,
        "sha": request.git_sha,
    }
    if request.slot:
        data["slot"] = request.slot
        data["claimed_at"] = request.claimed_at
    return data


def write_request(annotations: Any, tag: str, request: TagRequest) -> None:
    """Record ``request`` as the newest for ``tag`` (in place, on a service's annotations map)."""
    current = {t: _request_json(r) for t, r in read_requests(dict(annotations)).items()}
    current[tag] = _request_json(request)
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


class StillNewestSensor(BaseOperator):
    """The safe point before a deploy's writes: proceed, wait, or step aside; and the slot claim.

    In one etag-guarded write on the service it records this run as the tag's newest request and, when
    ``slot`` is given, claims that slot for the PR (the ``faye.dev/previews`` record's ``slot``, and
    ``claimed_at`` in ``faye.dev/requests``), so two PRs can never both claim one slot. A slot held by
    another preview is handled by the catalogue's slot policy (:func:`faye_plugin.queue.claim_decision`).
    While it waits, the run note says for what. Returns ``{"slot", "evict"}``.

    Waiting is a loop of looks and deferrals (``TimeDeltaTrigger``): the task holds no worker slot and
    shows as *deferred*. The pause is 15 s on purpose: Airflow 3.3's LocalExecutor keys a task by its try
    number, so when a resumed try is queued before the executor has collected the exit of the try that
    deferred (or rescheduled), the scheduler sees "finished with state success" for a running task and
    fails it as killed externally. Seen here with 2-3 s pauses on a loaded machine, in reschedule mode
    and with deferrals alike; a pause well above one scheduler loop avoids it.

    :param slot: the slot chosen when the run started (templated; None: no claim).
    :param poke_interval: seconds between two looks while waiting.
    :param timeout: seconds to wait at most, then fail.
    :param airflow_api_conn_id: the connection to Airflow's REST API.
    """

    template_fields: Sequence[str] = ("slot",)
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        slot: str | None = None,
        poke_interval: float = 15.0,
        timeout: float = 6 * 3600,
        airflow_api_conn_id: str = "faye_airflow_api",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.slot = slot
        self.poke_interval = poke_interval
        self.timeout = timeout
        self.airflow_api_conn_id = airflow_api_conn_id

    def execute(self, context: Any, since: float | None = None) -> dict[str, Any]:
        since = time.time() if since is None else since
        looked = self.poke(context)
        if looked.is_done:
            return dict(looked.xcom_value or {})
        if time.time() - since > self.timeout:
            raise TimeoutError(f"still waiting after {self.timeout:.0f} s; giving up")
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        self.defer(
            trigger=TimeDeltaTrigger(timedelta(seconds=self.poke_interval)),
            method_name="execute_complete",
            kwargs={"since": since},
        )
        raise AssertionError("defer() returns only by raising")  # pragma: no cover

    def execute_complete(self, context: Any, event: Any = None, since: float | None = None) -> dict[str, Any]:
        """Look again after a wait."""
        return self.execute(context, since=since)

    def _wait(self, client: Any, me: RunInfo, why: str) -> PokeReturnValue:
        note = f"waiting for {why}"[:1000]
        if me.note != note:
            client.set_note(me.dag_id, me.run_id, note)
        self.log.info("Waiting: %s", why)
        return PokeReturnValue(is_done=False)

    def poke(self, context: Any) -> PokeReturnValue:
        from faye_plugin.catalogue import load_catalogue
        from faye_plugin.hooks.airflow_api import AirflowApiHook
        from faye_plugin.hooks.cloud_run import CloudRunPreviewHook

        client = AirflowApiHook(self.airflow_api_conn_id).client
        dag_run = context["dag_run"]
        me = client.get_run(dag_run.dag_id, dag_run.run_id)
        if me.service is None or me.pr is None:
            raise ValueError(f"run {me.run_id} has no service/pr in its conf")
        tag = f"pr-{me.pr}"
        catalogue = load_catalogue()
        spec = catalogue.service(me.service)
        target = spec.cloud_run
        hook = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id)
        service = hook.get_service(project=target.project, region=target.region, service=target.service)
        recorded = None if service is None else read_requests(dict(service.annotations)).get(tag)
        runs = client.list_active_runs(DEPLOY_DAG)
        decision = safe_point_decision(me, runs, _same_preview_tis(client, me, runs), recorded)
        self.log.info("Safe point: %s (%s)", decision.action, decision.reason)
        if decision.action == "superseded":
            client.set_note(
                me.dag_id, me.run_id, superseded_note(decision.other_run_id or "?", decision.reason)
            )
            raise SupersededError(decision.reason)
        if decision.action == "wait":
            return self._wait(client, me, f"a running deploy of PR {me.pr} ({decision.other_run_id})")

        slot = str(self.slot) if self.slot not in (None, "", "None") else None
        routes = [] if slot is None else self._routes(spec.proxy_conn_id)
        writing: dict[str, RunInfo] = {}
        if slot is not None:  # runs of other PRs of this service inside their writes: their claims stand
            others = [r for r in runs if r.service == me.service and r.pr != me.pr]
            for run in others:
                if in_critical_section(client.task_instances(run.dag_id, run.run_id)):
                    writing[run.run_id] = run
        if service is None and slot is not None:
            # No service yet, so no annotation to claim a slot on: the first deploy creates the service.
            # First deploys of one service go one at a time, oldest first (no deadlock: the newer waits).
            first = [r for r in writing.values() if r.order_key < me.order_key]
            if first:
                return self._wait(client, me, f"the first deploy of {spec.name} ({first[0].run_id})")
        outcome: dict[str, Any] = {}

        def claim(current: Any) -> tuple[Any, list[str]] | None:
            outcome.clear()
            if current is None:
                return None  # the first deploy creates the service; nothing else can hold a slot on it
            requests = read_requests(dict(current.annotations))
            newest = requests.get(tag)
            if newest is not None and newest.run_id != me.run_id and newest.requested_at > me_requested_at:
                outcome["newer"] = newest
                return None
            now = time.time()
            if slot is not None and not self._claim(
                current=current,
                requests=requests,
                routes=routes,
                me=me,
                tag=tag,
                slot=slot,
                now=now,
                writing=set(writing),
                outcome=outcome,
            ):
                return None
            write_request(
                current.annotations,
                tag,
                TagRequest(me.run_id, me_requested_at, me.git_sha, slot, now if slot else None),
            )
            return current, ["annotations"]

        me_requested_at = me.run_after.timestamp()
        started = time.monotonic()
        try:
            hook.modify_service(
                project=target.project, region=target.region, service=target.service, change=claim
            )
        except SlotBusyError as exc:
            client.set_note(me.dag_id, me.run_id, f"failed, no slot: {exc}")
            raise
        if "newer" in outcome:
            newer: TagRequest = outcome["newer"]
            reason = f"{newer.run_id} (sha {newer.git_sha}), a newer deploy of PR {me.pr}, got here first"
            client.set_note(me.dag_id, me.run_id, superseded_note(newer.run_id, reason))
            raise SupersededError(reason)
        if "wait" in outcome:
            return self._wait(client, me, f"a slot: {outcome['wait']}")
        if me.note and me.note.startswith("waiting for "):
            client.set_note(me.dag_id, me.run_id, "")
        evict = outcome.get("evict")
        self.log.info(
            "Recorded %s as the newest request for %s%s in %.2fs",
            me.run_id,
            tag,
            f", claimed slot {slot}" + (f" from PR {evict}" if evict else "") if slot else "",
            time.monotonic() - started,
        )
        return PokeReturnValue(is_done=True, xcom_value={"slot": slot, "evict": evict})

    def _routes(self, proxy_conn_id: str) -> list[Any]:
        from faye_plugin.hooks.proxy import ProxyHook

        return list(ProxyHook(proxy_conn_id=proxy_conn_id).list_slot_routes())

    def _claim(
        self,
        *,
        current: Any,
        requests: dict[str, TagRequest],
        routes: list[Any],
        me: RunInfo,
        tag: str,
        slot: str,
        now: float,
        writing: set[str],
        outcome: dict[str, Any],
    ) -> bool:
        """Decide the claim on ``current`` and, when granted, write it into its previews record."""
        from faye_plugin.catalogue import load_catalogue
        from faye_plugin.hooks.cloud_run import PreviewRecord, read_previews, write_previews

        catalogue = load_catalogue()
        spec = catalogue.service(str(me.service))
        records = read_previews(current)
        holders = claim_holders(
            pr=int(me.pr or 0),
            records=records.values(),
            requests=requests,
            routes=routes,
            service=spec.name,
            now=now,
            writing_runs=writing,
        )
        decision = claim_decision(
            service=spec.name,
            pr=int(me.pr or 0),
            slot=slot,
            explicit=me.slot is not None,
            holders=holders,
            policy=catalogue.defaults.slot_policy,
            now=now,
        )  # raises SlotBusyError under the fail policy
        if decision.slot is None:
            outcome["wait"] = decision.reason
            return False
        outcome["evict"] = decision.evict.pr if decision.evict else None
        record = records.get(tag) or PreviewRecord(
            tag=tag,
            pr=int(me.pr or 0),
            sha="",
            slot="",
            revision="",
            expires=int(now) + catalogue.defaults.ttl_hours * 3600,
        )
        records[tag] = replace(record, slot=slot)
        write_previews(current, records)
        return True


def supersede_task(task_id: str = SUPERSEDE_TASK_ID, **kwargs: Any) -> SupersedeOlderRunsOperator:
    """The deploy DAG's first task."""
    kwargs.setdefault("retries", 0)
    return SupersedeOlderRunsOperator(task_id=task_id, **kwargs)


# The slot the deploy DAG chose in get_cloud_run_config, as prepare_configs hands it on (multiple_outputs).
DEPLOY_SLOT = "{{ ti.xcom_pull(task_ids='prepare_configs', key='slot') }}"


def still_newest_task(task_id: str = SAFE_POINT_TASK_ID, **kwargs: Any) -> StillNewestSensor:
    """The safe-point check and slot claim, placed right before ``release_slot`` (the first write).

    ``slot`` defaults to the slot ``prepare_configs`` passes on in faye_deploy.
    """
    kwargs.setdefault("slot", DEPLOY_SLOT)
    return StillNewestSensor(task_id=task_id, **kwargs)
