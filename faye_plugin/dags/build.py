"""The ``faye_build`` DAG: build and push a service's image at a commit, without deploying it."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG

from faye_plugin.dags.request_tasks import validate
from faye_plugin.groups.build import build_group
from faye_plugin.params import dag_params

DOC_MD = """
### faye_build
Build the image of `service` at `git_sha` on the builder host, tag it `<repo>:<full sha>` and push it
to the registry. The same Build group runs inside `faye_deploy` when the registry lacks the image.

Conf: the same as `faye_deploy` (`service`, `pr`, `git_sha`, ...). The first task rejects unknown keys
and services the catalogue does not declare. Build output streams into the `build.build_image` log
(`faye logs <run id> --dag faye_build --follow`).
"""


def build_build_dag() -> DAG:
    """Return the ``faye_build`` DAG."""
    with DAG(
        dag_id="faye_build",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        params=dag_params(),
        doc_md=DOC_MD,
        tags=["faye"],
        max_active_runs=16,
    ) as dag:
        validate() >> build_group()
    return dag
