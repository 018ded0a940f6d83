"""operators/cloud_run.py: what ExtendExpiryOperator tells should_build (no stack: a fake service hook).

``extend_expiry`` runs beside ``check_cloud_run``; its ``extended_revision`` is the revision the PR's
tag served in the very state its write extended, so a cleanup that removed the preview first shows.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from google.cloud import run_v2

from faye_plugin.catalogue import Defaults
from faye_plugin.operators import cloud_run as ops
from faye_plugin.preview_state import Preview, PreviewState

NAME = "projects/local/locations/europe-west1/services/hello"
REVISION = "hello-pr-7-abc1234"


def served(*, record: bool, tag: bool) -> run_v2.Service:
    service = run_v2.Service(name=NAME)
    if tag:
        service.traffic.append(run_v2.TrafficTarget(revision=REVISION, tag="pr-7"))
    if record:
        PreviewState().extend(7, 5).write(service)
    return service


class FakeHook:
    """``modify_service`` as Cloud Run's etag race would have it: each attempt reads ``reads.pop(0)``."""

    def __init__(self, *reads: run_v2.Service | None) -> None:
        self.reads = list(reads)
        self.written: run_v2.Service | None = None

    def modify_service(self, *, change: Any, **_: Any) -> run_v2.Service | None:
        while True:
            current = self.reads.pop(0)
            planned = change(current)
            if planned is None:
                return current
            if self.reads:  # another writer got there first: the write is refused, read again
                continue
            self.written = planned[0]
            return self.written


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch):
    target = SimpleNamespace(project="local", region="r", service="hello")
    spec = SimpleNamespace(name="hello", cloud_run=target)
    monkeypatch.setattr(ops, "_spec", lambda service: spec)
    monkeypatch.setattr(ops, "load_catalogue", lambda: SimpleNamespace(defaults=Defaults()))

    def run(hook: FakeHook) -> dict[str, Any]:
        monkeypatch.setattr(ops, "_hook", lambda spec: hook)
        return ops.ExtendExpiryOperator(task_id="extend_expiry", service="hello", pr=7).execute({})  # type: ignore[arg-type]

    return run


def test_extending_a_served_preview_names_its_revision(run) -> None:
    hook = FakeHook(served(record=True, tag=True))
    result = run(hook)
    assert result["extended_revision"] == REVISION and result["service_exists"]
    assert PreviewState.read(hook.written).get(7).expires > 5  # type: ignore[union-attr]


def test_a_preview_removed_before_the_write_names_none(run) -> None:
    hook = FakeHook(served(record=False, tag=False))
    result = run(hook)
    assert result["extended_revision"] is None
    assert isinstance(PreviewState.read(hook.written).get(7), Preview)  # the record is created all the same


def test_a_cleanup_winning_the_race_is_seen_on_the_re_read(run) -> None:
    # the first attempt sees the preview, the cleanup's write wins, the second attempt finds none
    result = run(FakeHook(served(record=True, tag=True), served(record=False, tag=False)))
    assert result["extended_revision"] is None


def test_no_service_yet_names_none(run) -> None:
    result = run(FakeHook(None))
    assert result["extended_revision"] is None and not result["service_exists"]
