"""The ``faye_test`` DAG: run a service's tests against the PR's live preview on a test server."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG

from faye_plugin.dags.request_tasks import resolve_preview, validate
from faye_plugin.groups.test import test_group
from faye_plugin.params import dag_params

DOC_MD = """
### faye_test
Run the tests of `service` against the preview of `pr` (the slot its proxy route holds, or conf `slot`)
on a leased test server. The same Test group runs inside `faye_deploy` after the preview is routed.

Test runs queue for the pool `faye_test_servers` (one slot per test server) and are served in trigger
order when triggered with `logical_date` set to now (a null one has no defined order).
Conf: the same as `faye_deploy`.
"""


def build_test_dag() -> DAG:
    """Return the ``faye_test`` DAG."""
    with DAG(
        dag_id="faye_test",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        params=dag_params(),
        doc_md=DOC_MD,
        tags=["faye"],
        max_active_runs=16,
    ) as dag:
        url = resolve_preview()
        validate() >> url >> test_group(preview_url="{{ ti.xcom_pull(task_ids='resolve_preview') }}")
    return dag
