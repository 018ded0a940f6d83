"""faye_teardown: the Airflow DAG that removes a closed pull request's preview.

Built by faye_plugin.dags.teardown.build_teardown_dag (docs/deploy.md); nothing else lives here.
"""

from __future__ import annotations

from faye_plugin.dags.teardown import build_teardown_dag

dag = build_teardown_dag()
