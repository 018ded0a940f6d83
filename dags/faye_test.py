"""faye_test: the Airflow DAG that tests a PR preview on a test server (builder in faye_plugin)."""

from __future__ import annotations

from faye_plugin.dags.test import build_test_dag

dag = build_test_dag()
