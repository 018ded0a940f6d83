"""The steps of ``faye_teardown`` (and ``faye_rollback``'s first): stop the PR's deploys, then remove it.

- ``stop_deploys`` (:class:`StopDeploysOperator`): the teardown or rollback is the PR's newest
  request, so it supersedes the PR's older deploys the way a newer deploy does (:mod:`faye_plugin.queue`,
  :func:`~faye_plugin.queue.plan_stop_deploys`): one before its safe point is stopped at once; one
  inside its writes (``release_slot`` .. ``update_proxy``) is waited for (deferred between looks) and
  stopped once they are done, so no deploy is ever cut between its revision and its route. A deploy
  triggered *after* this run wins: this run steps aside as superseded.
- ``remove_route`` (:class:`RemoveRoutesOperator`): the PR's slot routes, first (no hostname routes to
  a tag that is gone).
- ``remove_tag_and_record`` (:class:`RemoveTagAndRecordOperator`): the tag and the record (its slot
  claim) in one etag-guarded write (:func:`faye_plugin.removal.remove_preview`, a
  :mod:`faye_plugin.preview_state` transition).

Each is idempotent: a PR with no preview changes nothing. The two removals check on a fresh read that
no deploy of the PR triggered after this run has written meanwhile (then they keep its preview).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from faye_plugin.catalogue import ServiceSpec, load_catalogue
from faye_plugin.exceptions import SupersededError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook
    from faye_plugin.preview_state import PreviewState


def _hook(spec: ServiceSpec) -> CloudRunPreviewHook:
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook

    return CloudRunPreviewHook(gcp_conn_id=spec.cloud_run.gcp_conn_id)


def _read(spec: ServiceSpec) -> PreviewState:
    from faye_plugin import preview_state

    target = spec.cloud_run
    return preview_state.read(
        _hook(spec), project=target.project, region=target.region, service=target.service
    )


def trigger_ms(context: Context) -> int:
    """This run's trigger time in the preview state's epoch milliseconds (its place in the PR's queue)."""
    from faye_plugin.preview_state import ms

    return ms(context["dag_run"].run_after.timestamp())


def newer_write(state: PreviewState, pr: int, since_ms: int) -> str | None:
    """Why a deploy triggered after ``since_ms`` has written PR ``pr``'s preview, or None."""
    record = state.newer_request(pr, since_ms)
    if record is None:
        return None
    return (
        f"a deploy of PR {pr} triggered after this run ({record.run_id or 'finished'}, "
        f"sha {record.sha[:7] or '?'}) has written the preview since"
    )


class StopDeploysOperator(BaseOperator):
    """Supersede the PR's older deploys: stop them, or wait while one is inside its writes.

    Returns ``{"stopped": [run ids], "waited_for": [run ids]}``. Waiting is a loop of looks and
    deferrals (``TimeDeltaTrigger``, 15 s: the pause ``still_newest`` uses, for the same reason), so
    the task holds no worker slot; the run note says what it waits for.

    :param service: the catalogue's service name (templated).
    :param pr: the pull request number (templated).
    :param action: what this run does, for notes and logs ("teardown", "rollback").
    :param poke_interval: seconds between two looks while waiting.
    :param timeout: seconds to wait at most, then fail.
    :param airflow_api_conn_id: the connection to Airflow's REST API.
    """

    template_fields: Sequence[str] = ("service", "pr")
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        service: str,
        pr: int | str,
        action: str = "teardown",
        poke_interval: float = 15.0,
        timeout: float = 3600.0,
        airflow_api_conn_id: str = "faye_airflow_api",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr
        self.action = action
        self.poke_interval = poke_interval
        self.timeout = timeout
        self.airflow_api_conn_id = airflow_api_conn_id

    def execute(
        self,
        context: Context,
        since: float | None = None,
        stopped: list[str] | None = None,
        waited: list[str] | None = None,
    ) -> dict[str, Any]:
        from faye_plugin.params import validate_action

        since = time.time() if since is None else since
        stopped, waited = list(stopped or []), list(waited or [])
        catalogue = load_catalogue()
        validate_action(str(context["dag"].dag_id), {"service": self.service, "pr": _int(self.pr)}, catalogue)
        if self._look(context, catalogue.service(str(self.service)), stopped, waited):
            return {"stopped": stopped, "waited_for": waited}
        if time.time() - since > self.timeout:
            raise TimeoutError(f"still waiting for {', '.join(waited)} after {self.timeout:.0f} s; giving up")
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        self.defer(
            trigger=TimeDeltaTrigger(timedelta(seconds=self.poke_interval)),
            method_name="execute_complete",
            kwargs={"since": since, "stopped": stopped, "waited": waited},
        )
        raise AssertionError("defer() returns only by raising")  # pragma: no cover

    def execute_complete(
        self,
        context: Context,
        event: Any = None,
        since: float | None = None,
        stopped: list[str] | None = None,
        waited: list[str] | None = None,
    ) -> dict[str, Any]:
        """Look again after a wait."""
        return self.execute(context, since=since, stopped=stopped, waited=waited)

    def _look(self, context: Context, spec: ServiceSpec, stopped: list[str], waited: list[str]) -> bool:
        """One look: True when no older deploy of the PR is left."""
        from faye_plugin.hooks.airflow_api import AirflowApiHook
        from faye_plugin.queue import DEPLOY_DAG, deploy_of_same_preview, plan_stop_deploys, superseded_note

        client = AirflowApiHook(self.airflow_api_conn_id).client
        dag_run = context["dag_run"]
        pr = int(self.pr)
        runs = client.list_active_runs(DEPLOY_DAG)
        me = client.get_run(dag_run.dag_id, dag_run.run_id)
        tis = {
            r.run_id: client.task_instances(r.dag_id, r.run_id) for r in runs if deploy_of_same_preview(me, r)
        }
        plan = plan_stop_deploys(me, runs, tis)
        newer, why = "", ""
        if plan.superseded_by is not None:
            newer = plan.superseded_by.run_id
            why = f"a deploy of PR {pr} triggered after this {self.action} ({newer}) wins"
        else:
            state = _read(spec)
            why = newer_write(state, pr, trigger_ms(context)) or ""
            record = state.get(pr)
            newer = (record.run_id or "?") if why and record is not None else ""
        if newer:
            client.set_note(me.dag_id, me.run_id, superseded_note(newer, why))
            raise SupersededError(why)
        for old in plan.cancel:
            reason = f"{spec.name} PR {pr}'s preview is being {_done(self.action)} by {me.run_id}"
            result = client.mark_superseded(old.dag_id, old.run_id, me.run_id, reason)
            self.log.info("Stopped deploy %s (sha %s): now %s", old.run_id, old.git_sha, result.state)
            stopped.append(old.run_id)
        if plan.wait_for:
            names = ", ".join(r.run_id for r in plan.wait_for)
            waited.extend(r.run_id for r in plan.wait_for if r.run_id not in waited)
            note = f"waiting for {names}, a deploy of PR {pr} inside its writes"[:1000]
            if me.note != note:
                client.set_note(me.dag_id, me.run_id, note)
            self.log.info("Waiting: %s", note)
            return False
        if me.note and me.note.startswith("waiting for "):
            client.set_note(me.dag_id, me.run_id, "")
        if not stopped and not waited:
            self.log.info("No deploy of %s PR %d is running", spec.name, pr)
        return True


def _int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _done(action: str) -> str:
    return {"teardown": "torn down", "rollback": "rolled back"}.get(action, action)


class RemoveRoutesOperator(BaseOperator):
    """Remove the PR's slot routes from the proxy (before its tag goes). Idempotent.

    Returns ``{"routes_removed": [slots], "skipped": reason or ""}``.

    :param service: the catalogue's service name (templated).
    :param pr: the pull request number (templated).
    """

    template_fields: Sequence[str] = ("service", "pr")
    ui_color = "#ffe0e0"

    def __init__(self, *, service: str, pr: int | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr

    def execute(self, context: Context) -> dict[str, Any]:
        from faye_plugin.hooks.proxy import ProxyHook

        spec = load_catalogue().service(str(self.service))
        pr = int(self.pr)
        skipped = newer_write(_read(spec), pr, trigger_ms(context))
        if skipped:
            self.log.info("Kept the routes of %s PR %d: %s", spec.name, pr, skipped)
            return {"routes_removed": [], "skipped": skipped}
        proxy = ProxyHook(proxy_conn_id=spec.proxy_conn_id)
        removed = [
            route.slot
            for route in proxy.list_slot_routes()
            if route.service == spec.name and int(route.pr) == pr and proxy.delete_slot_route(route.slot)
        ]
        self.log.info(
            "Removed %s of %s PR %d",
            f"route(s) {', '.join(removed)}" if removed else "no route",
            spec.name,
            pr,
        )
        return {"routes_removed": removed, "skipped": ""}


class RemoveTagAndRecordOperator(BaseOperator):
    """Remove the PR's Cloud Run tag and its record (slot claim) in one etag-guarded write. Idempotent.

    Returns what :func:`faye_plugin.removal.remove_preview` did (``routes_removed``,
    ``tag_removed``, ``record_removed``, ``skipped``).

    :param service: the catalogue's service name (templated).
    :param pr: the pull request number (templated).
    """

    template_fields: Sequence[str] = ("service", "pr")
    ui_color = "#ffe0e0"

    def __init__(self, *, service: str, pr: int | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr

    def execute(self, context: Context) -> dict[str, Any]:
        from faye_plugin.hooks.proxy import ProxyHook
        from faye_plugin.removal import remove_preview

        spec = load_catalogue().service(str(self.service))
        pr = int(self.pr)
        since_ms = trigger_ms(context)
        removal = remove_preview(
            spec,
            pr,
            cloud_run=_hook(spec),
            proxy=ProxyHook(proxy_conn_id=spec.proxy_conn_id),
            only_if=lambda state: newer_write(state, pr, since_ms) is None,
        )
        return removal.as_dict()
