"""faye's Airflow cluster policy: a request's ``priority`` orders the pools' queues.

Airflow orders the task instances waiting for a pool slot by ``-priority_weight``, then logical date.
``task_instance_mutation_hook`` runs when a run's task instances are created (in the API server for a
REST trigger, and in the scheduler), so it can add the request's ``priority`` (0..100, from the run's
conf) to the weight of every task of faye's request DAGs: a release candidate with ``priority: 50``
gets a test server before a draft PR with the default 0.

Registered through the entry point group ``airflow.policy`` (pyproject):

    [project.entry-points."airflow.policy"]
    faye = "faye_plugin.policies"
"""

from __future__ import annotations

from typing import Any

from airflow.policies import hookimpl

from faye_plugin.queue import conf_priority


def _enable_mutation_hook() -> None:
    """Make Airflow call ``task_instance_mutation_hook`` for policies registered by entry point.

    Airflow 3.3.2 marks the hook as a no-op unless an ``airflow_local_settings`` module defines one
    (``settings.import_local_settings``), and a run's task instances are then bulk-created without
    calling it — so an ``airflow.policy`` entry point alone is silently ignored. This module is imported
    when that entry point is loaded (``settings.initialize``), which is the moment to clear the flag.
    """
    import airflow.settings

    hook = getattr(airflow.settings, "task_instance_mutation_hook", None)
    if hook is not None:
        hook.is_noop = False


_enable_mutation_hook()

REQUEST_DAGS = frozenset({"faye_deploy", "faye_build", "faye_test"})
# One priority step outweighs any task's own (downstream-sum) weight in faye's DAGs (a few dozen).
# Weights are kept modulo the scale, so applying the hook twice gives the same weight.
PRIORITY_SCALE = 1000


def weight_for(dag_id: str, base_weight: int | None, conf: dict[str, Any] | None) -> int | None:
    """The priority weight of a task of ``dag_id`` whose own weight is ``base_weight``."""
    if dag_id not in REQUEST_DAGS or not conf:
        return base_weight
    own = (base_weight or 0) % PRIORITY_SCALE
    return own + conf_priority(conf) * PRIORITY_SCALE


@hookimpl
def task_instance_mutation_hook(task_instance: Any, dag_run: Any) -> None:
    """Raise the weight of a faye request's task instances by the request's priority."""
    if dag_run is None:
        return  # not bound to a run yet; the hook runs again when it is
    conf = getattr(dag_run, "conf", None)
    task_instance.priority_weight = weight_for(
        str(task_instance.dag_id), task_instance.priority_weight, conf if isinstance(conf, dict) else None
    )
