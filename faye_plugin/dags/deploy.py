"""The ``faye_deploy`` DAG: one pull request's preview on Cloud Run, built only when needed.

Steps (docs/deploy.md explains each, and why ``update_proxy`` follows ``deploy_revision``)::

    get_cloud_run_config >> [extend_expiry, check_cloud_run, check_image] >> should_build
      >> [build.*] >> join >> still_newest >> prepare_configs >> release_slot >> deploy_revision
      >> update_proxy >> test.* ;  preview_url after update_proxy (or at once on a no-op)
    supersede_older_runs >> still_newest   (beside everything before the safe point)
    get_cloud_run_config >> report_started;  [preview_url, test.*, report_started] >> report_outcome

Independent reads run side by side: each dependency hop costs a scheduler round (~0.3-0.6 s here).
``should_build`` takes ``extend_expiry``'s result too: a no-op only when the expiry write found the
revision ``check_cloud_run`` saw (a cleanup between the two cannot then leave a declared no-op with
no preview).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup, TriggerRule, get_current_context, task

from faye_plugin.params import dag_params
from faye_plugin.task_docs import document

DAG_ID = "faye_deploy"

DOC = """
### faye_deploy — a preview of one pull request

Puts the PR's commit on Cloud Run as a revision under the tag `pr-<N>` (no production traffic) and
routes a **slot** hostname (`http://<slot>.preview.localhost:<port>`) to it; builds the image only when
the registry lacks it; then runs the service's tests against the preview on a leased test server.

**Reading a run.** The run id says what it is for (`hello-pr-777-74b5f9f-<UTC time>` when faye or CI
triggered it) and the **run note** says how it went, first word first:

- `running: hello PR 777 at 74b5f9f, slot a` — started (`slot: chosen by faye` until a slot is picked);
- `deployed: <slot URL> (...)` — green: the preview is live at that URL;
- `no change: already serving <sha> at <URL>` — green, **a no-op**: the PR already served this sha in
  that slot, so every step after `should_build` shows as skipped (pink). That is expected;
- `failed at <step>: <reason>` — red: the step that failed and why, in one line (its log has the rest);
- `superseded by <run id>` — red too, but nothing went wrong: a newer deploy of the same PR took over
  (Airflow has no other end state for a run; the note's first word tells them apart).

A **skipped build** (`build.*` pink, `join` green) means the image of that sha was already in the
registry. A run waiting at `still_newest` (deferred, note `waiting for ...`) lets an older deploy of the
same PR finish its writes first. The **slot** is the PR's own, the one asked for, a free one, or the
oldest preview's (which `release_slot` then removes).

**Triggering.** `faye deploy --service hello --pr 777 --sha <sha>`, or
`POST /api/v2/dags/faye_deploy/dagRuns`:

```json
{"dag_run_id": "hello-pr-777-74b5f9f-20261201T211446.123Z", "logical_date": "2026-12-01T21:14:46.123Z",
 "conf": {"service": "hello", "pr": 777, "git_sha": "<40 hex>"}}
```

(optional `slot`, `ttl_hours`, `force_build`, `priority`). The trigger time as `logical_date` keeps the
test-server queue first come, first served; a fixed `dag_run_id` makes a resend after HTTP 5xx safe.
An invalid conf is refused with HTTP 400 and no run.

**The steps.** `get_cloud_run_config` first; then, side by side, `extend_expiry`, `check_cloud_run`
and `check_image`; `should_build`, `build.*`, `join`, `still_newest` (the safe point; the queue's
`supersede_older_runs` runs beside everything before it), `prepare_configs`, `release_slot`,
`deploy_revision`, `update_proxy`, `test.wait_for_preview`, `test.run_tests`, and `preview_url` (the
outcome: URLs and revision). For a service with a `github` block, `report_started` (beside the reads)
and `report_outcome` (last, whatever happened) report to the pull request; a failed report shows red
without failing the run (docs/github.md). Each task's own doc says more (docs/deploy.md explains the
design).
"""


#: The request's commit as a full sha (``get_cloud_run_config`` resolves a short one).
FULL_SHA = "{{ ti.xcom_pull(task_ids='get_cloud_run_config')['git_sha'] }}"


def _build_group() -> TaskGroup:
    from faye_plugin.groups.build import build_group

    return build_group(group_id="build", git_sha=FULL_SHA)


def _test_group(preview_url: str) -> TaskGroup:
    from faye_plugin.groups.test import test_group

    return test_group(group_id="test", preview_url=preview_url, git_sha=FULL_SHA)


def skip_to_outcome(context: Any) -> None:
    """On a no-op, skip every task after the branch but ``preview_url``, all in one go.

    The branch operator skips only its direct downstream (``build.*``, ``join``); the scheduler then
    skips the next level in each of its loops, so a no-op waited for six loops before ``preview_url``
    (whose upstream ``update_proxy`` is at the end of that chain) could run. The standard provider's
    ``SkipMixin.skip`` sets any task of the run to skipped at once (it raises
    ``DownstreamTasksSkipped``, which ends this task as a success).

    Teardown tasks (``report_outcome``: the GitHub deployment ``report_started`` opened must still be
    closed) are left to run.
    """
    task, ti = context["task"], context["ti"]
    dag = task.dag
    later = {
        task_id
        for task_id in task.get_flat_relative_ids(upstream=False)
        if task_id != "preview_url" and not dag.get_task(task_id).is_teardown
    }
    task.skip(ti, [dag.get_task(task_id) for task_id in sorted(later)])


def build_deploy_dag(dag_id: str = DAG_ID, *, queue_steps: bool = True) -> DAG:
    """Return the deploy DAG.

    ``queue_steps`` adds issue 6's ``supersede_older_runs`` (beside the reads, done before the safe
    point) and ``still_newest`` (the safe point, right after ``join``); they need the
    ``faye_airflow_api`` connection.
    """
    from faye_plugin.operators.cloud_run import DeployPreviewOperator, ExtendExpiryOperator
    from faye_plugin.operators.github import ReportOutcomeOperator, ReportStartedOperator
    from faye_plugin.operators.proxy import ReleaseSlotOperator, UpdateProxyOperator

    with DAG(
        dag_id=dag_id,
        description="Deploy a pull request's preview to Cloud Run, build only when needed, route it, test it",
        doc_md=DOC,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=16,
        params=dag_params(),
        tags=["faye", "preview"],
        default_args={"retries": 0, "owner": "faye"},
    ) as dag:

        @task
        def get_cloud_run_config() -> dict[str, Any]:
            from faye_plugin import steps

            return steps.get_cloud_run_config(dict(get_current_context()["params"]))

        @task
        def check_cloud_run(config: Any) -> dict[str, Any]:
            from faye_plugin import steps

            return steps.check_cloud_run(config)

        @task
        def check_image(config: Any) -> dict[str, str] | None:
            from faye_plugin import steps

            return steps.check_image(config)

        @task.branch
        def should_build(config: Any, cloud_run: Any, image: Any, expiry: Any) -> list[str]:
            from faye_plugin import steps

            branches = steps.should_build(config, cloud_run, image, expiry)
            if not branches:
                skip_to_outcome(get_current_context())
            return branches

        @task(multiple_outputs=True)
        def prepare_configs(config: Any, expiry: Any, image: Any) -> dict[str, Any]:
            from faye_plugin import steps
            from faye_plugin.settings import artifacts_dir

            context = get_current_context()
            built = context["ti"].xcom_pull(task_ids="build.push_image")
            claimed = context["ti"].xcom_pull(task_ids="still_newest") if queue_steps else None
            folder = artifacts_dir() / context["dag"].dag_id / context["run_id"]
            return steps.prepare_configs(config, expiry, image, built, folder, claimed=claimed)

        @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        def preview_url(config: Any, cloud_run: Any) -> dict[str, Any]:
            from faye_plugin import steps

            ti = get_current_context()["ti"]
            deployed = ti.xcom_pull(task_ids="deploy_revision")
            routed = ti.xcom_pull(task_ids="update_proxy")
            return steps.preview_url(config, cloud_run, deployed, routed)

        config = get_cloud_run_config()
        expiry = ExtendExpiryOperator(
            task_id="extend_expiry",
            service="{{ params.service }}",
            pr="{{ params.pr }}",
            ttl_hours="{{ params.ttl_hours }}",
        )
        # The three reads after the config depend on it alone: they run side by side.
        cloud_run = check_cloud_run(config)
        image = check_image(config)
        branch = should_build(config, cloud_run, image, expiry.output)
        build = _build_group()
        join = EmptyOperator(task_id="join", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        configs: Any = prepare_configs(config, expiry.output, image)
        release = ReleaseSlotOperator(
            task_id="release_slot", service="{{ params.service }}", pr="{{ params.pr }}", slot=configs["slot"]
        )
        deploy = DeployPreviewOperator(
            task_id="deploy_revision",
            service="{{ params.service }}",
            pr="{{ params.pr }}",
            git_sha=FULL_SHA,
            slot=configs["slot"],
            image=configs["image"],
            env=configs["env"],
            expires=configs["expires"],
        )
        proxy = UpdateProxyOperator(
            task_id="update_proxy",
            service="{{ params.service }}",
            preview=deploy.output,  # type: ignore[arg-type]
        )
        tests = _test_group("{{ ti.xcom_pull(task_ids='update_proxy')['slot_url'] }}")
        outcome = preview_url(config, cloud_run)
        # GitHub (services with a `github` block; docs/github.md): the start beside the reads, the
        # outcome after everything. report_outcome is a teardown task: it runs whatever happened and its
        # own failure shows in the run without failing it (the preview's fate is not the report's).
        started = ReportStartedOperator(
            task_id="report_started", service="{{ params.service }}", pr="{{ params.pr }}", git_sha=FULL_SHA
        )
        reported = ReportOutcomeOperator(
            task_id="report_outcome",
            service="{{ params.service }}",
            pr="{{ params.pr }}",
            git_sha="{{ params.git_sha }}",
        ).as_teardown()

        config >> expiry
        config >> started
        [outcome, tests, started] >> reported
        branch >> build >> join
        branch >> join
        configs >> release >> deploy >> proxy >> tests
        proxy >> outcome
        if queue_steps:
            from faye_plugin.operators.queue import still_newest_task, supersede_task

            supersede = supersede_task()
            safe_point = still_newest_task()
            # Superseding only has to be done before the safe point: a newer run cancels this one
            # before it and waits past it (docs/queue.md), wherever the reads before it are.
            supersede >> safe_point
            # The claim decides the slot; the configs render that slot's URL into the preview's env.
            join >> safe_point >> configs
        else:
            join >> configs
    return document(dag)
