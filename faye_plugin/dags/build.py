"""The ``faye_build`` DAG: build and push a service's image at a commit, without deploying it."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG

from faye_plugin.dags.request_tasks import validate
from faye_plugin.groups.build import build_group
from faye_plugin.params import dag_params
from faye_plugin.task_docs import document

DOC_MD = """
### faye_build — the image of one commit, without deploying it

Builds the image of `service` at `git_sha` on the builder host, tags it `<repo>:<full sha>` and pushes
it to the registry, so a later `faye_deploy` of that sha skips its build. The same Build group runs
inside `faye_deploy` when the registry lacks the image.

**Reading a run.** The run note says which service, PR and sha it is for, then `built: ...` (green) or
`failed at <step>: <reason>` (red). A bad conf (unknown keys, a service the catalogue does not
declare, ...) is refused at trigger time with HTTP 400 naming every problem. The build's output
streams into the `build.build_image` log (`faye logs <run id> --dag faye_build --follow`).

**Triggering.** `POST /api/v2/dags/faye_build/dagRuns` with the same conf as `faye_deploy`:
`{"dag_run_id": "hello-pr-777-74b5f9f-<UTC time>", "logical_date": "<now>", "conf": {"service": "hello",
"pr": 777, "git_sha": "<sha>"}}`.
"""


def build_build_dag() -> DAG:
    """Return the ``faye_build`` DAG."""
    with DAG(
        dag_id="faye_build",
        description="Build and push a service's image at a commit, without deploying it",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        params=dag_params(),
        doc_md=DOC_MD,
        tags=["faye"],
        max_active_runs=16,
        default_args={"owner": "faye"},
    ) as dag:
        validate() >> build_group()
    return document(dag)
