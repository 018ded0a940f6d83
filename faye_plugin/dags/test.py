"""The ``faye_test`` DAG: run a service's tests against the PR's live preview on a test server."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG

from faye_plugin.dags.request_tasks import resolve_preview, validate
from faye_plugin.groups.test import test_group
from faye_plugin.params import dag_params
from faye_plugin.task_docs import document

DOC_MD = """
### faye_test — the tests of a PR, against its live preview

Runs the tests of `service` against the preview of `pr` (the slot its proxy route holds, or conf
`slot`) on a leased test server. The same Test group runs inside `faye_deploy` after the preview is
routed.

**Reading a run.** The run note says which service, PR and sha it is for, then `tests passed: ...`
(green) or `failed at <step>: <reason>` (red; the `test.run_tests` log has the tests' own output and
result). A `run_tests` that shows as *deferred* waits for a free test server: test runs queue for the
pool `faye_test_servers` (one slot per server), served in trigger order (faye's trigger gate
gives a null `logical_date` the trigger time).

**Triggering.** `POST /api/v2/dags/faye_test/dagRuns` with the same conf as `faye_deploy`:
`{"dag_run_id": "hello-pr-777-74b5f9f-<UTC time>", "logical_date": "<now>", "conf": {"service": "hello",
"pr": 777, "git_sha": "<sha>"}}`.
"""


def build_test_dag() -> DAG:
    """Return the ``faye_test`` DAG."""
    with DAG(
        dag_id="faye_test",
        description="Run a service's tests against a PR's live preview on a leased test server",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        params=dag_params(),
        doc_md=DOC_MD,
        tags=["faye"],
        max_active_runs=16,
        default_args={"owner": "faye"},
    ) as dag:
        url = resolve_preview()
        validate() >> url >> test_group(preview_url="{{ ti.xcom_pull(task_ids='resolve_preview') }}")
    return document(dag)
