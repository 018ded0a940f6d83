"""The ``faye_deploy`` DAG: one pull request's preview on Cloud Run, built only when needed.

Steps (docs/deploy.md explains each, and why ``update_proxy`` follows ``deploy_revision``)::

    supersede_older_runs >> get_cloud_run_config >> extend_expiry >> check_cloud_run >> check_image
      >> should_build >> [build.*] >> join >> prepare_configs >> still_newest >> release_slot
      >> deploy_revision >> update_proxy >> test.* ;  preview_url after update_proxy (or at once on a no-op)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup, TriggerRule, get_current_context, task

from faye_plugin.params import dag_params

DAG_ID = "faye_deploy"

DOC = """
### faye_deploy — a preview of one pull request

Trigger with `POST /api/v2/dags/faye_deploy/dagRuns` and
`{"logical_date": "<now, ISO 8601>", "conf": {"service": "hello", "pr": 1, "git_sha": "<40 hex>"}}`
(the trigger time as `logical_date` keeps the test-server queue first come, first served)
(optional `slot`, `ttl_hours`, `force_build`, `priority`). An invalid conf is refused with HTTP 400.

1. **get_cloud_run_config** — the service's catalogue entry and Cloud Run service; Cloud Run's limits
   checked; the slot chosen (asked for, the PR's own, a free one, or the oldest preview's).
2. **extend_expiry** — the tag's expiry pushed out first, so even a failed preview expires.
3. **check_cloud_run** — already serving this sha under `pr-<N>` in that slot? Then the rest is skipped
   and the run ends green with the same URL.
4. **check_image** / **should_build** / **build** / **join** — build only when the registry lacks the image.
5. **prepare_configs** — `.env` and `docker-compose.yaml` for the slot, kept under the artifacts folder.
6. **release_slot** — the preview holding the slot is removed (route, then tag).
7. **deploy_revision** — a new revision under tag `pr-<N>`, no production traffic (deferrable wait).
8. **update_proxy** — the slot's hostname routed to the tag's URL.
9. **test** — the service's tests against the preview, on a leased test server.

The run's outcome (URLs, revision) is the return value of **preview_url**.
"""


#: The request's commit as a full sha (``get_cloud_run_config`` resolves a short one).
FULL_SHA = "{{ ti.xcom_pull(task_ids='get_cloud_run_config')['git_sha'] }}"


def _build_group() -> TaskGroup:
    from faye_plugin.groups.build import build_group

    return build_group(group_id="build", git_sha=FULL_SHA)


def _test_group(preview_url: str) -> TaskGroup:
    from faye_plugin.groups.test import test_group

    return test_group(group_id="test", preview_url=preview_url, git_sha=FULL_SHA)


def build_deploy_dag(dag_id: str = DAG_ID, *, queue_steps: bool = True) -> DAG:
    """Return the deploy DAG.

    ``queue_steps`` adds issue 6's ``supersede_older_runs`` (first) and ``still_newest`` (right before
    ``release_slot``); they need the ``faye_airflow_api`` connection.
    """
    from faye_plugin.operators.cloud_run import DeployPreviewOperator, ExtendExpiryOperator
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
        default_args={"retries": 0},
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
        def should_build(config: Any, cloud_run: Any, image: Any) -> list[str]:
            from faye_plugin import steps

            return steps.should_build(config, cloud_run, image)

        @task(multiple_outputs=True)
        def prepare_configs(config: Any, expiry: Any, image: Any) -> dict[str, Any]:
            from faye_plugin import steps
            from faye_plugin.settings import artifacts_dir

            context = get_current_context()
            built = context["ti"].xcom_pull(task_ids="build.push_image")
            folder = artifacts_dir() / context["dag"].dag_id / context["run_id"]
            return steps.prepare_configs(config, expiry, image, built, folder)

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
        cloud_run = check_cloud_run(config)
        image = check_image(config)
        branch = should_build(config, cloud_run, image)
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

        config >> expiry >> cloud_run >> image >> branch
        branch >> build >> join
        branch >> join
        configs >> release >> deploy >> proxy >> tests
        join >> configs
        proxy >> outcome
        if queue_steps:
            from faye_plugin.operators.queue import still_newest_task, supersede_task

            supersede = supersede_task()
            safe_point = still_newest_task()
            supersede >> config
            configs >> safe_point >> release
    return dag
