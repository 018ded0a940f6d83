"""The Test task group: wait until the preview answers, then run the service's tests on a test server.

Used by ``faye_deploy`` (after the preview is routed) and by ``faye_test``. The DAG's params carry
``service``, ``pr`` and ``git_sha``.

Queueing: ``run_tests`` runs in the pool ``faye_test_servers`` (one slot per test server). The
scheduler hands free pool slots to waiting task instances ordered by ``-priority_weight`` then the
run's ``logical_date``: every ``run_tests`` has the same absolute weight, so they are served in the
order their runs were triggered (the trigger gate, ``faye_plugin.api.gate``, gives a run triggered
with a null ``logical_date`` the trigger time).
"""

from __future__ import annotations

from airflow.sdk import TaskGroup

from faye_plugin.operators.preview_ready import WaitForPreviewOperator
from faye_plugin.operators.test_runner import TestRunnerOperator
from faye_plugin.settings import TEST_SERVERS_POOL

#: The priority weight of every test task (absolute: FIFO by logical_date among equals).
TEST_PRIORITY_WEIGHT = 1


def test_group(
    group_id: str = "test",
    preview_url: str = "{{ ti.xcom_pull(task_ids='resolve_preview') }}",
    git_sha: str = "{{ params.git_sha }}",
    preview_timeout_seconds: float = 300.0,
) -> TaskGroup:
    """Return a TaskGroup ``wait_for_preview >> run_tests`` for the current DAG.

    :param group_id: the group's id (task ids are prefixed with it).
    :param preview_url: the preview's URL (templated), e.g. ``http://a.preview.localhost:28801``.
    :param git_sha: the commit under test (templated; the request's ``git_sha`` by default). A short
        sha is resolved to the full one for the image tag; ``GIT_SHA`` is the sha as given.
    :param preview_timeout_seconds: how long the preview may take to answer 2xx.
    """
    with TaskGroup(
        group_id=group_id, tooltip="wait for the preview, lease a test server, run the tests"
    ) as group:
        wait = WaitForPreviewOperator(
            task_id="wait_for_preview", url=preview_url, timeout_seconds=preview_timeout_seconds
        )
        run = TestRunnerOperator(
            task_id="run_tests",
            service="{{ params.service }}",
            git_sha=git_sha,
            pr="{{ params.pr }}",
            preview_url=preview_url,
            pool=TEST_SERVERS_POOL,
            priority_weight=TEST_PRIORITY_WEIGHT,
            weight_rule="absolute",
        )
        wait >> run
    return group


test_group.__test__ = False  # type: ignore[attr-defined]  # a factory, not a pytest test
