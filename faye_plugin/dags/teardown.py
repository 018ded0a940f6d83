"""The ``faye_teardown`` and ``faye_rollback`` DAGs: a closed PR's preview goes; a PR's preview goes back.

Steps::

    faye_teardown:  stop_deploys >> remove_route >> remove_tag_and_record >> teardown_outcome
                    >> report_teardown (GitHub: deployments inactive, the comment says torn down)
    faye_rollback:  stop_deploys >> roll_back >> update_proxy >> rollback_outcome
                    >> report_rollback (GitHub: a new deployment of the older commit, the comment)

docs/deploy.md explains both ("Tear down" and "Roll back").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, get_current_context, task

from faye_plugin.params import ROLLBACK_DAG, TEARDOWN_DAG, action_params
from faye_plugin.task_docs import document

TEARDOWN_DOC = """
### faye_teardown — a closed pull request's preview goes away

Removes one PR's preview everywhere: its proxy route (first, so no hostname routes to nothing), then
its Cloud Run tag `pr-<N>` and its record in `faye.dev/previews` (which is also its slot claim) in one
write. A deploy of the same PR still running is stopped at its safe point; one already inside its
writes is waited for (never cut between its revision and its route), then stopped.

**Reading a run.** The run note says how it went, first word first:

- `running: teardown of hello PR 777` — started (`waiting for <run>, ...` while a deploy finishes its writes);
- `torn down: hello PR 777 (route a, tag pr-777, record)` — green: what was removed;
- `no change: hello PR 777 has no preview` — green, **a no-op**: there was nothing to remove (a
  teardown twice is safe);
- `failed at <step>: <reason>` — red: the step that failed and why, in one line;
- `superseded by <run id>` — red, nothing went wrong: a deploy of the PR triggered *after* this
  teardown (the PR was reopened) wins, and its preview is kept.

**Triggering.** `faye teardown hello 777`, or `POST /api/v2/dags/faye_teardown/dagRuns` with
`{"dag_run_id": "hello-pr-777-teardown-<UTC time>", "logical_date": null, "conf": {"service": "hello",
"pr": 777}}`. An invalid conf is refused with HTTP 400 and no run. Steps: `stop_deploys`,
`remove_route`, `remove_tag_and_record`, `teardown_outcome`, and `report_teardown` (a service with a
`github` block: the PR's GitHub deployments become inactive and its comment says torn down).
"""

ROLLBACK_DOC = """
### faye_rollback — a PR's preview goes back to an earlier revision

Moves the tag `pr-<N>` back to the PR's previous ready revision (or conf `revision`) and updates its
record (sha, revision) in the same write; the slot URL keeps answering, now with the older commit.
A deploy of the same PR still running is stopped first (as `faye_teardown` does).

**Reading a run.** The run note: `running: rollback of hello PR 777` → `rolled back: <slot URL> now
serves <sha> (hello PR 777, revision <name>, was <sha>)` (green) | `failed at <step>: <reason>` (red:
e.g. `roll_back` has no earlier ready revision, or `revision` is another PR's) | `superseded by <run>`.

**Triggering.** `faye rollback hello 777 [--to REVISION]`, or
`POST /api/v2/dags/faye_rollback/dagRuns` with `{"dag_run_id": "hello-pr-777-rollback-<UTC time>",
"logical_date": null, "conf": {"service": "hello", "pr": 777, "revision": null}}`. Steps:
`stop_deploys`, `roll_back`, `update_proxy`, `rollback_outcome`, and `report_rollback` (a service with
a `github` block: a new GitHub deployment of the older commit at the same slot URL, the comment).
"""

SERVICE = "{{ params.service }}"
PR = "{{ params.pr }}"


def _dag(dag_id: str, description: str, doc: str) -> DAG:
    return DAG(
        dag_id=dag_id,
        description=description,
        doc_md=doc,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=16,
        params=action_params(dag_id),
        tags=["faye", "preview"],
        default_args={"retries": 0, "owner": "faye"},
    )


def build_teardown_dag(dag_id: str = TEARDOWN_DAG) -> DAG:
    """Return the teardown DAG."""
    from faye_plugin.operators.github import ReportTeardownOperator
    from faye_plugin.operators.teardown import (
        RemoveRoutesOperator,
        RemoveTagAndRecordOperator,
        StopDeploysOperator,
    )

    with _dag(
        dag_id, "Tear a closed pull request's preview down: route, tag, slot claim, record", TEARDOWN_DOC
    ) as dag:

        @task
        def teardown_outcome() -> dict[str, Any]:
            context = get_current_context()
            params, ti = context["params"], context["ti"]
            routes = ti.xcom_pull(task_ids="remove_route") or {}
            removal = ti.xcom_pull(task_ids="remove_tag_and_record") or {}
            return teardown_summary(str(params["service"]), int(params["pr"]), routes, removal)

        stop = StopDeploysOperator(task_id="stop_deploys", service=SERVICE, pr=PR, action="teardown")
        routes = RemoveRoutesOperator(task_id="remove_route", service=SERVICE, pr=PR)
        removal = RemoveTagAndRecordOperator(task_id="remove_tag_and_record", service=SERVICE, pr=PR)
        # GitHub (a teardown task: runs whatever happened, never fails the run; docs/github.md)
        report = ReportTeardownOperator(task_id="report_teardown", service=SERVICE, pr=PR).as_teardown()
        stop >> routes >> removal >> teardown_outcome() >> report
    return document(dag)


def teardown_summary(
    service: str, pr: int, routes: dict[str, Any], removal: dict[str, Any]
) -> dict[str, Any]:
    """The teardown's outcome (the run note's words come from it): what went, or that nothing was there."""
    slots = sorted({*routes.get("routes_removed", []), *removal.get("routes_removed", [])})
    skipped = routes.get("skipped") or removal.get("skipped") or ""
    return {
        "service": service,
        "pr": pr,
        "tag": f"pr-{pr}",
        "routes_removed": slots,
        "tag_removed": bool(removal.get("tag_removed")),
        "record_removed": bool(removal.get("record_removed")),
        "skipped": skipped,
        "noop": not (slots or removal.get("tag_removed") or removal.get("record_removed")),
    }


def build_rollback_dag(dag_id: str = ROLLBACK_DAG) -> DAG:
    """Return the rollback DAG."""
    from faye_plugin.operators.github import ReportRollbackOperator
    from faye_plugin.operators.proxy import UpdateProxyOperator
    from faye_plugin.operators.rollback import RollbackOperator
    from faye_plugin.operators.teardown import StopDeploysOperator

    with _dag(dag_id, "Roll a pull request's preview back to an earlier ready revision", ROLLBACK_DOC) as dag:

        @task
        def rollback_outcome() -> dict[str, Any]:
            ti = get_current_context()["ti"]
            rolled = dict(ti.xcom_pull(task_ids="roll_back") or {})
            routed = ti.xcom_pull(task_ids="update_proxy") or {}
            return {**rolled, "slot_url": routed.get("slot_url")}

        stop = StopDeploysOperator(task_id="stop_deploys", service=SERVICE, pr=PR, action="rollback")
        rolled = RollbackOperator(
            task_id="roll_back", service=SERVICE, pr=PR, revision="{{ params.revision }}"
        )
        proxy = UpdateProxyOperator(task_id="update_proxy", service=SERVICE, preview=rolled.output)  # type: ignore[arg-type]
        # GitHub (a teardown task: runs whatever happened, never fails the run; docs/github.md)
        report = ReportRollbackOperator(task_id="report_rollback", service=SERVICE, pr=PR).as_teardown()
        stop >> rolled >> proxy >> rollback_outcome() >> report
    return document(dag)
