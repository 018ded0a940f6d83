"""faye_plugin/links.py: the "Preview" and "Pull request" links on the deploy's tasks (what they show
after a real run: tests/integration/test_github_report.py)."""

from __future__ import annotations

from faye_plugin.dags.deploy import build_deploy_dag
from faye_plugin.dags.teardown import build_rollback_dag


def test_the_links_are_on_update_proxy_and_report_started() -> None:
    deploy, rollback = build_deploy_dag(), build_rollback_dag()
    names = {
        task.task_id: sorted(link.name for link in task.operator_extra_links)
        for task in deploy.tasks
        if task.operator_extra_links
    }
    assert names == {"update_proxy": ["Preview"], "report_started": ["Pull request"]}
    assert [link.name for link in rollback.get_task("update_proxy").operator_extra_links] == ["Preview"]
