"""faye_deploy: the Airflow DAG that deploys a pull request's preview to Cloud Run.

Built by faye_plugin.dags.deploy.build_deploy_dag (docs/deploy.md); nothing else lives here.
"""

from __future__ import annotations

from faye_plugin.dags.deploy import build_deploy_dag

dag = build_deploy_dag()
