"""Extra links on faye's tasks: "Preview" (the slot URL) and "Pull request" (the PR on GitHub).

In Airflow 3 a link is resolved in the task's own process when the task ends (the task runner calls
``get_link`` and keeps the URL in XCom under the link's ``xcom_key``); the UI shows that URL as a
button on the task instance, and ``GET .../taskInstances/{task_id}/links`` returns it. Both links read
the task's own return value, so they cost no call: ``update_proxy`` returns the ``slot_url`` it routed,
``report_started`` the ``pull_request_url`` of the PR it reports to. A task that ended without one
(failed, or a service without a ``github`` block) has an empty link, which the UI shows disabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def _returned(ti_key: TaskInstanceKey, field: str) -> str:
    from airflow.sdk.execution_time.xcom import XCom

    value: Any = XCom.get_value(ti_key=ti_key, key="return_value")
    return str(value.get(field) or "") if isinstance(value, dict) else ""


class PreviewLink(BaseOperatorLink):
    """The preview's slot URL, on ``update_proxy`` (deploy and rollback)."""

    name = "Preview"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return _returned(ti_key, "slot_url")


class PullRequestLink(BaseOperatorLink):
    """The pull request's page on GitHub, on ``report_started``."""

    name = "Pull request"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return _returned(ti_key, "pull_request_url")
