"""faye_build: build and push a service image at a commit (the DAG builder lives in faye_plugin)."""

from __future__ import annotations

from faye_plugin.dags.build import build_build_dag

dag = build_build_dag()
