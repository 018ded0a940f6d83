"""faye_cleanup: the Airflow DAG that removes expired previews on a schedule.

Built by faye_plugin.dags.cleanup.build_cleanup_dag (docs/deploy.md); nothing else lives here.
"""

from __future__ import annotations

from faye_plugin.dags.cleanup import build_cleanup_dag

dag = build_cleanup_dag()
