"""The ``faye_cleanup`` DAG: remove expired previews (tag, proxy route, slot claim), on a schedule.

Safe at any time and twice in a row: each removal re-reads the service and removes only what is still
expired and not pinned; removing something already gone changes nothing.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, TriggerRule, task

DAG_ID = "faye_cleanup"
log = logging.getLogger(__name__)

DOC = """
### faye_cleanup — expired previews go away

Every 15 minutes (and whenever triggered): for each catalogue service, the previews whose expiry in the
Cloud Run annotation `faye.dev/previews` has passed are removed — their proxy route first, then their
Cloud Run tag and their record (which is also their slot claim). A **pinned** preview
(`faye pin <service> <pr>`, i.e. `"pinned": true` in its record) is kept past its expiry.
Routes that point at a tag Cloud Run no longer serves are removed too, and so are preview revisions
that no traffic target refers to any more (Cloud Run keeps at most 1000 revisions per service).
"""


def find_expired_previews(now: float | None = None) -> list[dict[str, Any]]:
    """Return ``[{"service", "pr"}]`` for every expired, unpinned preview of every catalogue service."""
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, read_previews
    from faye_plugin.previews import is_expired

    now = time.time() if now is None else now
    expired = []
    for spec in load_catalogue().services.values():
        target = spec.cloud_run
        service = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id).get_service(
            project=target.project, region=target.region, service=target.service
        )
        if service is None:
            continue
        for tag, record in sorted(read_previews(service).items()):
            if is_expired(record, now):
                log.info("%s %s expired at %s", spec.name, tag, record.expires)
                expired.append({"service": spec.name, "pr": record.pr})
            elif record.pinned and record.expires <= now:
                log.info("%s %s is past its expiry but pinned: kept", spec.name, tag)
    return expired


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
        for revision in hook.list_revisions(
            project=target.project, region=target.region, service=target.service
        ):
            name = short_name(revision.name)
            if LABEL_PR in revision.labels and name not in referenced and hook.delete_revision(revision.name):
                log.info(
                    "Deleted revision %s of %s (preview PR %s)", name, spec.name, revision.labels[LABEL_PR]
                )
                pruned.append(name)
    return pruned


def build_cleanup_dag(dag_id: str = DAG_ID, *, every: timedelta = timedelta(minutes=15)) -> DAG:
    """Return the cleanup DAG, scheduled ``every`` interval, one run at a time."""
    from faye_plugin.operators.cloud_run import RemovePreviewOperator

    with DAG(
        dag_id=dag_id,
        description="Remove expired, unpinned previews: proxy route, Cloud Run tag, slot claim",
        doc_md=DOC,
        schedule=every,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["faye", "cleanup"],
        default_args={"retries": 0},
    ) as dag:

        @task
        def find_expired() -> list[dict[str, Any]]:
            return find_expired_previews()

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def remove_dangling() -> list[dict[str, Any]]:
            return remove_dangling_routes()

        expired = find_expired()
        removed = RemovePreviewOperator.partial(task_id="remove_expired", only_expired=True).expand_kwargs(
            expired
        )

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def remove_unused_revisions() -> list[str]:
            return prune_revisions()

        removed >> remove_dangling() >> remove_unused_revisions()
    return dag
