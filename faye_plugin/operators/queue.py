"""The deploy's queue steps: ``supersede_older_runs`` (beside the reads) and ``still_newest`` (safe point).

- ``supersede_older_runs`` cancels older active deploys of the same (service, pr) that have not reached
  their safe point: the run is set to failed with the note ``superseded by <run>``. Older runs already
  past it are left to finish their writes. Cleanup runs and other DAGs are never touched.
- ``still_newest`` runs right before the writes (``prepare_configs``, then ``release_slot``). It ends
  its own run as
  superseded if a newer deploy of the PR exists or Cloud Run records a newer request for the tag;
  it waits (deferred between looks: no worker slot held) while an older deploy of the PR is inside its
  writes; otherwise it records this run's request on the service and lets the writes begin.

Both reach other runs only through Airflow's REST API (``faye_airflow_api``); the rules themselves are
pure functions in :mod:`faye_plugin.queue`. H5's DAG builder uses :func:`supersede_task` and
:func:`still_newest_task`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
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
    in_critical_section,
    plan_supersede,
    safe_point_decision,
    same_preview,
    superseded_note,
)


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

    In one etag-guarded write on the service (:func:`faye_plugin.preview_state.apply`) it records this
    run as the tag's newest request and, when ``slot`` is given, claims a slot for the PR: the slot is
    chosen again on that fresh read (:func:`faye_plugin.slots.claim`: the PR's own, else a free one,
    else by the catalogue's slot policy), and the claim is refused while another live claim holds it,
    so two PRs can never both take one slot. While it waits, the run note says for what. Returns
    ``{"slot", "evict"}``: later steps take that slot.

    Waiting is a loop of looks and deferrals (``TimeDeltaTrigger``): the task holds no worker slot and
    shows as *deferred*. The pause is 15 s on purpose: Airflow 3.3's LocalExecutor keys a task by its try
    number, so when a resumed try is queued before the executor has collected the exit of the try that
    deferred (or rescheduled), the scheduler sees "finished with state success" for a running task and
    fails it as killed externally. Seen here with 2-3 s pauses on a loaded machine, in reschedule mode
    and with deferrals alike; a pause well above one scheduler loop avoids it.

    :param slot: the slot chosen when the run started, a hint (templated; None: no claim).
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
        from faye_plugin.exceptions import AirflowApiError

        note = f"waiting for {why}"[:1000]
        if me.note != note:
            try:
                client.set_note(me.dag_id, me.run_id, note)
            except AirflowApiError as exc:  # the note tells a person; the wait goes on without it
                self.log.warning("could not set the run note %r: %s", note, exc)
        self.log.info("Waiting: %s", why)
        return PokeReturnValue(is_done=False)

    def poke(self, context: Any) -> PokeReturnValue:
        from faye_plugin import preview_state, slots
        from faye_plugin.catalogue import load_catalogue
        from faye_plugin.hooks.airflow_api import AirflowApiHook
        from faye_plugin.hooks.cloud_run import CloudRunPreviewHook
        from faye_plugin.naming import expires_at, tag_of

        client = AirflowApiHook(self.airflow_api_conn_id).client
        dag_run = context["dag_run"]
        # Runs are listed BEFORE the service is read: a claim made after this moment counts as live
        # whatever the list says (preview_state.Liveness), so a claim can never look abandoned.
        listed_ms = preview_state.ms(time.time())
        runs = client.list_active_runs(DEPLOY_DAG)
        me = client.get_run(dag_run.dag_id, dag_run.run_id)
        if me.service is None or me.pr is None:
            raise ValueError(f"run {me.run_id} has no service/pr in its conf")
        pr, tag = int(me.pr), tag_of(me.pr)
        catalogue = load_catalogue()
        spec = catalogue.service(me.service)
        target = spec.cloud_run
        hook = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id)
        service = hook.get_service(project=target.project, region=target.region, service=target.service)
        requested_ms = preview_state.ms(me.run_after.timestamp())
        decision = safe_point_decision(
            me,
            runs,
            _same_preview_tis(client, me, runs),
            _recorded(preview_state.PreviewState.read(service), pr),
        )
        self.log.info("Safe point: %s (%s)", decision.action, decision.reason)
        if decision.action == "superseded":
            client.set_note(
                me.dag_id, me.run_id, superseded_note(decision.other_run_id or "?", decision.reason)
            )
            raise SupersededError(decision.reason)
        if decision.action == "wait":
            return self._wait(client, me, f"a running deploy of PR {me.pr} ({decision.other_run_id})")

        hint = str(self.slot) if self.slot not in (None, "", "None") else None
        if service is None and hint is not None:
            # No service yet, so no annotation to claim a slot on: the first deploy creates the service.
            # First deploys of one service go one at a time, oldest first (no deadlock: the newer waits).
            others = [
                r for r in runs if r.service == me.service and r.pr != me.pr and r.order_key < me.order_key
            ]
            first = [r for r in others if in_critical_section(client.task_instances(r.dag_id, r.run_id))]
            if first:
                return self._wait(client, me, f"the first deploy of {spec.name} ({first[0].run_id})")
            return PokeReturnValue(is_done=True, xcom_value={"slot": me.slot or hint, "evict": None})
        routes = [] if hint is None else self._routes(spec.proxy_conn_id)
        liveness_of = functools.partial(
            preview_state.Liveness, active_runs=frozenset(r.run_id for r in runs), listed_ms=listed_ms
        )
        outcome: dict[str, Any] = {}
        expires = expires_at(time.time(), catalogue.defaults.ttl_hours)

        def claim(state: preview_state.PreviewState, current: Any) -> preview_state.Planned | None:
            outcome.clear()
            newer = state.newer_request(pr, requested_ms)
            if newer is not None:
                outcome["newer"] = newer
                return None
            if hint is None:
                return preview_state.Planned(state.request(pr, requested_ms=requested_ms, expires=expires))
            new, chosen = slots.claim(
                state,
                pr=pr,
                run_id=me.run_id,
                requested_ms=requested_ms,
                requested_slot=me.slot,
                service=spec.name,
                service_slots=spec.slots,
                routes=routes,
                policy=catalogue.defaults.slot_policy,
                liveness=liveness_of(now_ms=preview_state.ms(time.time())),
                expires=expires,
                hint=hint,
            )  # raises SlotBusyError under the fail policy
            outcome["decision"] = chosen
            return None if new is None else preview_state.Planned(new)

        started = time.monotonic()
        try:
            preview_state.apply(
                hook, project=target.project, region=target.region, service=target.service, transition=claim
            )
        except SlotBusyError as exc:
            client.set_note(me.dag_id, me.run_id, f"failed, no slot: {exc}")
            raise
        if "newer" in outcome:
            reason = f"a newer deploy of PR {me.pr} got here first ({_recorded_words(outcome['newer'])})"
            client.set_note(me.dag_id, me.run_id, superseded_note(outcome["newer"].run_id or "?", reason))
            raise SupersededError(reason)
        chosen = outcome.get("decision")
        if chosen is not None and chosen.slot is None:
            return self._wait(client, me, f"a slot: {chosen.reason}")
        if me.note and me.note.startswith("waiting for "):
            client.set_note(me.dag_id, me.run_id, "")
        slot = chosen.slot if chosen is not None else None
        evict = chosen.evict.pr if chosen is not None and chosen.evict else None
        self.log.info(
            "Recorded %s as the newest request for %s%s in %.2fs",
            me.run_id,
            tag,
            f", claimed slot {slot} ({chosen.reason})" if chosen is not None else "",
            time.monotonic() - started,
        )
        return PokeReturnValue(is_done=True, xcom_value={"slot": slot, "evict": evict})

    def _routes(self, proxy_conn_id: str) -> list[Any]:
        from faye_plugin.hooks.proxy import ProxyHook

        return list(ProxyHook(proxy_conn_id=proxy_conn_id).list_slot_routes())


def _recorded(state: Any, pr: int) -> TagRequest | None:
    """The PR's newest request as the service records it, for the safe point."""
    record = state.get(pr)
    if record is None or not record.requested_ms:
        return None
    return TagRequest(record.run_id, record.requested_ms / 1000, record.sha or None)


def _recorded_words(record: Any) -> str:
    return f"{record.run_id or 'a finished run'}, requested at {record.requested_ms / 1000:.3f}"


def supersede_task(task_id: str = SUPERSEDE_TASK_ID, **kwargs: Any) -> SupersedeOlderRunsOperator:
    """The deploy DAG's supersede step: a root, beside the reads; ``still_newest`` waits for it."""
    kwargs.setdefault("retries", 0)
    return SupersedeOlderRunsOperator(task_id=task_id, **kwargs)


# The slot get_cloud_run_config chose (a hint: the claim decides again on a fresh read).
DEPLOY_SLOT = "{{ ti.xcom_pull(task_ids='get_cloud_run_config')['slot'] }}"


def still_newest_task(task_id: str = SAFE_POINT_TASK_ID, **kwargs: Any) -> StillNewestSensor:
    """The safe-point check and slot claim, placed before ``prepare_configs`` and ``release_slot``.

    ``slot`` defaults to the slot ``get_cloud_run_config`` chose in faye_deploy (a hint: the claim
    decides on a fresh read, so later steps take the slot this task returns).
    """
    kwargs.setdefault("slot", DEPLOY_SLOT)
    return StillNewestSensor(task_id=task_id, **kwargs)
