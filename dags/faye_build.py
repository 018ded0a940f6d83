"""faye_build: the Airflow DAG that builds and pushes a service image (builder in faye_plugin)."""

from __future__ import annotations

from faye_plugin.dags.build import build_build_dag

dag = build_build_dag()
