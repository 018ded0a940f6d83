"""faye_test: run a service's tests against its PR preview (the DAG builder lives in faye_plugin)."""

from __future__ import annotations

from faye_plugin.dags.test import build_test_dag

dag = build_test_dag()
