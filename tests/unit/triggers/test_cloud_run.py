"""triggers/cloud_run.py: CloudRunOperationTrigger.

The serialize round trip needs nothing; the waits run the trigger's real ``run()`` against the
stack's Cloud Run emulator (marked integration): a real long-running operation, the emulator's fault
injection for a transient (503) and a non-transient (500) answer to GetOperation, and an operation
that does not exist.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from faye_testing import push_serving_image
from google.cloud import run_v2

from faye_plugin.hooks.cloud_run import (
    CloudRunPreviewHook,
    preview_tag,
    revision_name,
    service_path,
    with_preview_revision,
)
from faye_plugin.triggers.cloud_run import CloudRunOperationTrigger

PROJECT, REGION = "local", "europe-west1"
SHA = "4444444444444444444444444444444444444444"
SERVE = 'mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p "0.0.0.0:$PORT" -h /tmp/www'


def test_serialize_round_trip() -> None:
    trigger = CloudRunOperationTrigger(
        "projects/p/locations/r/operations/x", gcp_conn_id="other", poll_interval=0.5, timeout=30.0
    )
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert type(rebuilt) is CloudRunOperationTrigger
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {
        "operation": "projects/p/locations/r/operations/x",
        "gcp_conn_id": "other",
        "poll_interval": 0.5,
        "timeout": 30.0,
    }
    json.dumps(kwargs)  # the triggerer stores them as JSON


def first_event(trigger: CloudRunOperationTrigger) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(run(), timeout=180))


# --- against the stack's emulator ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def image(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny serving image in the stack's registry."""
    return push_serving_image(stack, tmp_path_factory.mktemp("trigger-image"), "trigger-ok", SERVE)


@pytest.fixture
def operation(stack: dict[str, Any], stack_process_env: dict[str, str], image: str) -> Iterator[str]:
    """A real operation: creating a one-revision service on the emulator (deleted afterwards)."""
    hook = CloudRunPreviewHook()
    service_id = f"trig-{uuid.uuid4().hex[:6]}"
    service = with_preview_revision(
        run_v2.Service(name=service_path(PROJECT, REGION, service_id)),
        revision=revision_name(service_id, 1, SHA),
        image=image,
        env={},
        labels={"faye-pr": "1", "faye-sha": SHA, "faye-slot": "a"},
        tag=preview_tag(1),
    )
    yield hook.start_update_service(service, allow_missing=True)
    hook.delete_service(project=PROJECT, region=REGION, service=service_id)


@pytest.fixture
def faults(stack: dict[str, Any]) -> Iterator[str]:
    url = f"{stack['cloud_run_url']}/_emulator/faults"
    yield url
    requests.delete(url, timeout=5)


@pytest.mark.integration
def test_a_real_operation_is_waited_for_until_done(operation: str) -> None:
    event = first_event(CloudRunOperationTrigger(operation, poll_interval=0.2, timeout=120))
    assert event["status"] == "success", event
    assert event["operation"] == operation
    assert event["message"].startswith("done after ")


@pytest.mark.integration
def test_a_transient_503_is_polled_again(operation: str, faults: str) -> None:
    requests.post(
        faults, json={"method": "GetOperation", "status": 503, "count": 3}, timeout=5
    ).raise_for_status()
    event = first_event(CloudRunOperationTrigger(operation, poll_interval=0.2, timeout=120))
    assert event["status"] == "success", event
    assert requests.get(faults, timeout=5).json()["faults"] == []  # every 503 was met, then the answer


@pytest.mark.integration
def test_a_500_ends_the_wait_at_the_first_poll(operation: str, faults: str) -> None:
    requests.post(
        faults, json={"method": "GetOperation", "status": 500, "count": 2}, timeout=5
    ).raise_for_status()
    event = first_event(CloudRunOperationTrigger(operation, poll_interval=0.2, timeout=120))
    assert event["status"] == "error"
    assert "InternalServerError" in event["message"]
    [left] = requests.get(faults, timeout=5).json()["faults"]
    assert left["count"] == 1  # asked once, not retried


@pytest.mark.integration
def test_an_unknown_operation_is_an_error(stack_process_env: dict[str, str]) -> None:
    name = f"projects/{PROJECT}/locations/{REGION}/operations/{uuid.uuid4().hex}"
    event = first_event(CloudRunOperationTrigger(name, poll_interval=0.2, timeout=30))
    assert event["status"] == "error"
    assert "NotFound" in event["message"]
