"""faye_rollback: the Airflow DAG that moves a pull request's preview back to an earlier revision.

Built by faye_plugin.dags.teardown.build_rollback_dag (docs/deploy.md); nothing else lives here.
"""

from __future__ import annotations

from faye_plugin.dags.teardown import build_rollback_dag

dag = build_rollback_dag()
