"""The ``faye_cleanup`` DAG: remove expired previews (tag, proxy route, slot claim), on a schedule, and
repair what disagrees (faye_plugin.repair: the same repair as `faye doctor --fix`).

Safe at any time and twice in a row: each removal re-reads the service and removes only what is still
expired and not pinned; removing something already gone changes nothing.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, TriggerRule, task

from faye_plugin.task_docs import document

if TYPE_CHECKING:
    from faye_plugin.preview_state import Liveness

DAG_ID = "faye_cleanup"
log = logging.getLogger(__name__)

DOC = """
### faye_cleanup — expired previews go away

Every 15 minutes (and whenever triggered): for each catalogue service, the previews whose expiry in the
Cloud Run annotation `faye.dev/previews` has passed (or whose first deploy is more than the catalogue's
`max_lifetime_hours` ago, however often they were redeployed) are removed — their proxy route first,
then their Cloud Run tag and their record (which is also their slot claim), so their slot is free again. A
**pinned** preview (`faye pin <service> <pr>`, i.e. `"pinned": true` in its record) is kept past its
expiry. Then `repair_lost` runs faye's self-repair, the same as `faye doctor --fix`
(`faye_plugin/repair.py`): a preview whose tag Cloud Run deleted on its own (past 2,000 tags in a
project and region it deletes a service's oldest tags without a traffic percentage) loses its record
and route, a `pr-N` tag without a slot claim goes, a route to nothing goes, a route to the wrong
preview is re-pointed, a test-server lease of a finished task is released; a deploy in flight is never
touched. Routes that point at a tag Cloud Run no longer serves are removed, and
so are preview revisions that no traffic target refers to any more (Cloud Run keeps at most 1000
revisions per service).

**Reading a run.** Green with `remove_expired` showing no mapped instances: nothing had expired. One
mapped `remove_expired` instance per service with expired previews (all of a service's expired
previews go in one write of its Cloud Run service). A failed run's note says `failed at <step>:
<reason>`. Safe to trigger at any time: `POST /api/v2/dags/faye_cleanup/dagRuns` with
`{"logical_date": null}`.
"""


def find_expired_previews(now: float | None = None) -> list[dict[str, Any]]:
    """Return ``[{"service", "prs"}]``: per catalogue service, the PRs of its expired, unpinned previews.

    One entry per service (not per preview): its removal is one write of the service, and the mapped
    task stays far below Airflow's ``[core] max_map_length`` (1024) whatever the number of previews.
    """
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook
    from faye_plugin.preview_state import PreviewState

    now = time.time() if now is None else now
    expired = []
    for spec in load_catalogue().services.values():
        target = spec.cloud_run
        service = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id).get_service(
            project=target.project, region=target.region, service=target.service
        )
        if service is None:
            continue
        prs = []
        for record in PreviewState.read(service):
            if record.is_expired(now, spec.max_lifetime_hours):
                log.info(
                    "%s %s expired at %s (first deployed at %s, max lifetime %d h)",
                    spec.name,
                    record.tag,
                    record.expires,
                    record.born,
                    spec.max_lifetime_hours,
                )
                prs.append(record.pr)
            elif record.pinned and record.expires <= now:
                log.info("%s %s is past its expiry but pinned: kept", spec.name, record.tag)
        if prs:
            expired.append({"service": spec.name, "prs": sorted(prs)})
    return expired


def deploy_liveness() -> Liveness:
    """What decides which slot claims are deploys in flight: Airflow's active ``faye_deploy`` runs.

    Listed BEFORE any service is read (a claim made after the listing counts as live whatever the list
    says, as at the safe point). When the API cannot be reached, every claim younger than
    ``CLAIM_GRACE_SECONDS`` counts as live: slower to repair, never wrong.
    """
    from faye_plugin.repair import deploys_in_flight

    return deploys_in_flight().liveness


def repair_lost_previews() -> list[dict[str, Any]]:
    """Run faye's self-repair (:func:`faye_plugin.repair.repair_all`, the one ``faye doctor --fix``
    runs): previews whose tag Cloud Run deleted, tags without a claim, routes to nothing or to the
    wrong preview, leases of finished tasks; never a deploy in flight. Returns the repairs done.
    """
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.repair import LEFT, repair_all

    repairs = repair_all(load_catalogue())
    for repair in repairs:
        if repair.action == LEFT:
            log.warning("%s", repair)
    return [r.as_dict() for r in repairs if r.done]


def remove_dangling_routes() -> list[dict[str, Any]]:
    """Remove slot routes of catalogue services whose tag Cloud Run no longer serves.

    Only for services that exist on Cloud Run: a route of a service Cloud Run does not know is left
    alone (a wrong project or credentials must not wipe the proxy).
    """
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, tags
    from faye_plugin.hooks.proxy import ProxyHook

    removed = []
    catalogue = load_catalogue()
    proxies = {spec.proxy_conn_id for spec in catalogue.services.values()}
    for conn_id in sorted(proxies):
        proxy = ProxyHook(proxy_conn_id=conn_id)
        for route in proxy.list_slot_routes():
            spec = catalogue.services.get(route.service)
            if spec is None or spec.proxy_conn_id != conn_id:
                continue
            target = spec.cloud_run
            service = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id).get_service(
                project=target.project, region=target.region, service=target.service
            )
            if service is None:
                continue  # no such service on Cloud Run: not for faye to judge (wrong project? a test?)
            if route.tag not in tags(service):
                # Re-check the route itself: a deploy may have re-routed the slot meanwhile.
                again = proxy.get_slot_route(route.slot)
                if again is not None and (again.service, again.tag) == (route.service, route.tag):
                    proxy.delete_slot_route(route.slot)
                    removed.append({"slot": route.slot, "service": route.service, "tag": route.tag})
    return removed


def prune_revisions() -> list[str]:
    """Delete faye's preview revisions that no traffic target refers to any more.

    A revision labelled ``faye-pr`` that is neither in the service's traffic (spec or status) nor its
    latest ready/created revision serves nothing: its preview was replaced by a newer sha or removed.
    Each preview's rollback target (its newest ready revision older than the one it serves) is kept.
    Cloud Run keeps such revisions (at most 1000 per service), so they are deleted here. Production
    revisions (no ``faye-pr`` label) are never touched.
    """
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, short_name
    from faye_plugin.previews import LABEL_PR

    pruned = []
    for spec in load_catalogue().services.values():
        target = spec.cloud_run
        hook = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id)
        service = hook.get_service(project=target.project, region=target.region, service=target.service)
        if service is None:
            continue
        referenced = {t.revision for t in service.traffic if t.revision}
        referenced |= {t.revision for t in service.traffic_statuses if t.revision}
        referenced |= {
            short_name(n) for n in (service.latest_ready_revision, service.latest_created_revision) if n
        }
        revisions = hook.list_revisions(project=target.project, region=target.region, service=target.service)
        referenced |= _rollback_targets(service, revisions)
        for revision in revisions:
            name = short_name(revision.name)
            if LABEL_PR in revision.labels and name not in referenced and hook.delete_revision(revision.name):
                log.info(
                    "Deleted revision %s of %s (preview PR %s)", name, spec.name, revision.labels[LABEL_PR]
                )
                pruned.append(name)
    return pruned


def _rollback_targets(service: Any, revisions: list[Any]) -> set[str]:
    """The revision each preview of ``service`` would roll back to (kept: ``faye rollback`` needs it)."""
    from faye_plugin.hooks.cloud_run import tag_revision, tags
    from faye_plugin.naming import pr_of
    from faye_plugin.rollback import kept_for_rollback, revision_info

    served = {}
    for tag in tags(service):
        pr, revision = pr_of(tag), tag_revision(service, tag)
        if pr is not None and revision:
            served[pr] = revision
    return kept_for_rollback([revision_info(r) for r in revisions], served)


def build_cleanup_dag(dag_id: str = DAG_ID, *, every: timedelta = timedelta(minutes=15)) -> DAG:
    """Return the cleanup DAG, scheduled ``every`` interval, one run at a time."""
    from faye_plugin.operators.cloud_run import RemoveExpiredPreviewsOperator
    from faye_plugin.operators.github import ReportExpiredOperator

    with DAG(
        dag_id=dag_id,
        description="Remove expired, unpinned previews: proxy route, Cloud Run tag, slot claim",
        doc_md=DOC,
        schedule=every,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["faye", "cleanup"],
        default_args={"retries": 0, "owner": "faye"},
    ) as dag:

        @task
        def find_expired() -> list[dict[str, Any]]:
            return find_expired_previews()

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def repair_lost() -> list[dict[str, Any]]:
            return repair_lost_previews()

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def remove_dangling() -> list[dict[str, Any]]:
            return remove_dangling_routes()

        expired = find_expired()
        removed = RemoveExpiredPreviewsOperator.partial(task_id="remove_expired").expand_kwargs(expired)

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def remove_unused_revisions() -> list[str]:
            return prune_revisions()

        # GitHub (services with a github block): a teardown task, so a failed report never fails the
        # cleanup; it reports what the removals did, whichever of them failed.
        reported = ReportExpiredOperator(task_id="report_expired", removals=removed.output).as_teardown()
        removed >> reported
        removed >> repair_lost() >> remove_dangling() >> remove_unused_revisions()
    return document(dag)
