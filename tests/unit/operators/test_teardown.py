"""operators/teardown.py's StopDeploysOperator, one look at a time, against a fake Airflow REST client:
stop, wait, step aside (no stack: the rules are queue.plan_stop_deploys, the I/O is faked here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from faye_plugin.catalogue import parse_catalogue
from faye_plugin.exceptions import SupersededError
from faye_plugin.operators import teardown
from faye_plugin.operators.teardown import StopDeploysOperator
from faye_plugin.preview_state import Preview, PreviewState, ms
from faye_plugin.queue import RunInfo, TaskState

T0 = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
SPEC = parse_catalogue(
    {
        "services": {
            "hello": {
                "cloud_run": {"project": "local", "region": "r"},
                "image": "x/hello",
                "build": {"git_url": "/tmp/hello"},
                "slots": ["a"],
            }
        }
    }
).service("hello")


def run(run_id: str, minute: int, dag_id: str = "faye_deploy", pr: int = 7) -> RunInfo:
    conf: dict[str, Any] = {"service": "hello", "pr": pr}
    if dag_id == "faye_deploy":
        conf["git_sha"] = "a" * 40
    return RunInfo(dag_id, run_id, "running", T0 + timedelta(minutes=minute), conf)


class FakeClient:
    def __init__(self, runs: list[RunInfo], tis: dict[str, list[TaskState]]) -> None:
        self.runs, self.tis = runs, tis
        self.notes: list[str] = []
        self.superseded: list[str] = []

    def list_active_runs(self, dag_id: str) -> list[RunInfo]:
        return [r for r in self.runs if r.dag_id == dag_id]

    def get_run(self, dag_id: str, run_id: str) -> RunInfo:
        return next(r for r in self.runs if r.run_id == run_id)

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskState]:
        return self.tis.get(run_id, [])

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        self.notes.append(note)

    def mark_superseded(self, dag_id: str, run_id: str, by: str, reason: str = "") -> Any:
        self.superseded.append(run_id)
        return SimpleNamespace(state="failed")


@pytest.fixture
def look(monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(client: FakeClient, state: PreviewState | None = None) -> Any:
        from faye_plugin.hooks import airflow_api

        monkeypatch.setattr(airflow_api.AirflowApiHook, "client", client)
        monkeypatch.setattr(teardown, "_read", lambda spec: state or PreviewState())
        me = run("teardown", 5, dag_id="faye_teardown")
        client.runs.append(me)
        context: Any = {
            "dag_run": SimpleNamespace(dag_id=me.dag_id, run_id=me.run_id, run_after=me.run_after)
        }
        operator = StopDeploysOperator(task_id="stop_deploys", service="hello", pr=7)
        stopped: list[str] = []
        waited: list[str] = []
        return lambda: (operator._look(context, SPEC, stopped, waited), stopped, waited)

    return make


def writes(state: str | None) -> list[TaskState]:
    return [
        TaskState("still_newest", "success"),
        TaskState("deploy_revision", "success"),
        TaskState("update_proxy", state),
    ]


def test_an_older_deploy_before_its_safe_point_is_stopped_at_once(look: Any) -> None:
    client = FakeClient(
        [run("early", 0), run("other-pr", 1, pr=8)], {"early": [TaskState("still_newest", None)]}
    )
    assert look(client)() == (True, ["early"], [])
    assert client.superseded == ["early"]


def test_a_deploy_inside_its_writes_is_waited_for_then_stopped(look: Any) -> None:
    client = FakeClient([run("writing", 0)], {"writing": writes("queued")})
    once = look(client)
    assert once() == (False, [], ["writing"])
    assert client.superseded == [] and client.notes == [
        "waiting for writing, a deploy of PR 7 inside its writes"
    ]
    client.tis["writing"] = writes("success")  # its writes are done; it tests a preview that is going
    assert once() == (True, ["writing"], ["writing"])


def test_a_deploy_triggered_later_or_a_newer_write_wins(look: Any) -> None:
    client = FakeClient([run("reopened", 9)], {})
    with pytest.raises(SupersededError, match="triggered after this teardown"):
        look(client)()
    assert client.notes[-1].startswith("superseded by reopened") and client.superseded == []
    written = PreviewState(
        {7: Preview(pr=7, expires=9, run_id="done", requested_ms=ms((T0 + timedelta(minutes=6)).timestamp()))}
    )
    client = FakeClient([], {})
    with pytest.raises(SupersededError, match="has written the preview since"):
        look(client, written)()
    assert client.notes[-1].startswith("superseded by done")
