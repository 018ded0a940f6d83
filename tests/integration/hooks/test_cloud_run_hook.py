"""CloudRunPreviewHook against the stack's Cloud Run emulator, through the official client.

Revisions really run on the emulator (containers on the stack's run host), so the test builds a tiny
image that answers ``$GREETING $K_REVISION`` on ``$PORT`` and pushes it to the stack's registry.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import run_v2

from faye_plugin.hooks.cloud_run import (
    CONFLICT_ERRORS,
    CloudRunPreviewHook,
    PreviewRecord,
    preview_tag,
    read_previews,
    revision_name,
    service_path,
    short_name,
    tag_revision,
    tag_uri,
    tags,
    with_preview_revision,
    without_tag,
    write_previews,
)

pytestmark = pytest.mark.integration
PROJECT, REGION = "local", "europe-west1"
SHA1 = "1111111111111111111111111111111111111111"
SHA2 = "2222222222222222222222222222222222222222"
SHA3 = "3333333333333333333333333333333333333333"
SERVE = (
    'mkdir -p /tmp/www && echo "$GREETING $K_REVISION" > /tmp/www/index.html'
    ' && exec httpd -f -p "0.0.0.0:$PORT" -h /tmp/www'
)


@pytest.fixture(scope="module")
def image(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny serving image in the stack's registry: ``<registry>/faye-test/greeter:<tag>``."""
    context: Path = tmp_path_factory.mktemp("greeter")
    (context / "Dockerfile").write_text(
        f"FROM localhost/faye-base:latest\nCMD {json.dumps(['/bin/sh', '-c', SERVE])}\n"
    )
    repository, tag = f"{stack['registry_host']}/faye-test/greeter", "v1"
    client = docker.DockerClient(base_url=stack["build_docker_url"], timeout=120)
    try:
        client.images.build(path=str(context), tag=f"{repository}:{tag}", rm=True)
        for line in client.images.push(repository, tag=tag, stream=True, decode=True):
            assert "error" not in line, line
    finally:
        client.close()
    return f"{repository}:{tag}"


@pytest.fixture
def hook(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> CloudRunPreviewHook:
    extra = {"is_anonymous": True, "project": PROJECT, "api_endpoint": stack["cloud_run_url"]}
    monkeypatch.setenv(
        "AIRFLOW_CONN_FAYE_CLOUD_RUN", json.dumps({"conn_type": "google_cloud_platform", "extra": extra})
    )
    return CloudRunPreviewHook(operation_timeout=120)


@pytest.fixture
def service_id(hook: CloudRunPreviewHook) -> Iterator[str]:
    """A service name no other test uses; the service is deleted afterwards."""
    name = f"h3-{uuid.uuid4().hex[:6]}"
    yield name
    hook.delete_service(project=PROJECT, region=REGION, service=name)


def front_door(stack: dict[str, Any], url: str) -> str:
    """GET a Cloud Run URL through the emulator's front door (the Host header picks service and tag)."""
    host = url.split("://", 1)[1]
    response = requests.get(f"{stack['cloud_run_url']}/", headers={"Host": host}, timeout=30)
    response.raise_for_status()
    return response.text.strip()


def preview(
    current: run_v2.Service, service_id: str, image: str, pr: int, sha: str, *, slot: str = "a"
) -> run_v2.Service:
    return with_preview_revision(
        current,
        revision=revision_name(service_id, pr, sha),
        image=image,
        env={"GREETING": f"hello-from-pr-{pr}"},
        labels={"faye-pr": str(pr), "faye-sha": sha, "faye-slot": slot},
        tag=preview_tag(pr),
    )


def test_previews_on_a_new_service(
    stack: dict[str, Any], hook: CloudRunPreviewHook, service_id: str, image: str
) -> None:
    assert hook.get_service(project=PROJECT, region=REGION, service=service_id) is None
    name = service_path(PROJECT, REGION, service_id)
    rev1, rev2 = revision_name(service_id, 1, SHA1), revision_name(service_id, 2, SHA2)

    # 1. the first preview creates the service: it serves 100% and carries its tag
    first = preview(run_v2.Service(name=name), service_id, image, 1, SHA1)
    records = {
        "pr-1": PreviewRecord("pr-1", 1, SHA1, "a", rev1, int(time.time()) + 3600, False, int(time.time()))
    }
    write_previews(first, records)
    created = hook.update_service(first, allow_missing=True)
    assert short_name(created.latest_ready_revision) == rev1
    assert [(t.revision, t.percent, t.tag) for t in created.traffic_statuses] == [(rev1, 100, "pr-1")]
    uri1 = tag_uri(created, "pr-1")
    assert uri1 is not None
    assert front_door(stack, uri1) == f"hello-from-pr-1 {rev1}"
    assert read_previews(created) == records
    # the exact revision is recorded on itself: labels pr and sha
    revision = hook.get_revision(f"{name}/revisions/{rev1}")
    assert revision is not None
    assert (revision.labels["faye-pr"], revision.labels["faye-sha"]) == ("1", SHA1)

    # 2. a second preview gets a tag and no traffic; production stays on rev1
    second = preview(created, service_id, image, 2, SHA2, slot="b")
    records["pr-2"] = PreviewRecord(
        "pr-2", 2, SHA2, "b", rev2, int(time.time()) + 7200, False, int(time.time())
    )
    write_previews(second, records)
    updated = hook.update_service(second)
    statuses = {t.tag: (t.revision, t.percent) for t in updated.traffic_statuses}
    assert statuses == {"pr-1": (rev1, 100), "pr-2": (rev2, 0)}
    assert tag_revision(updated, "pr-2") == rev2
    uri2 = tag_uri(updated, "pr-2")
    assert uri2 is not None and uri2 != uri1
    assert front_door(stack, uri2) == f"hello-from-pr-2 {rev2}"
    assert front_door(stack, updated.uri) == f"hello-from-pr-1 {rev1}"
    assert {
        short_name(r.name) for r in hook.list_revisions(project=PROJECT, region=REGION, service=service_id)
    } == {
        rev1,
        rev2,
    }

    # 3. an annotation-only change (pin pr-1) creates no revision
    records["pr-1"] = PreviewRecord(**{**records["pr-1"].__dict__, "pinned": True})
    write_previews(updated, records)
    pinned = hook.update_service(updated, update_mask=["annotations"])
    assert read_previews(pinned)["pr-1"].pinned is True
    assert len(hook.list_revisions(project=PROJECT, region=REGION, service=service_id)) == 2

    # 4. a new commit on PR 2 moves its tag; the old preview revision is retired and can be deleted
    rev3 = revision_name(service_id, 2, SHA3)
    moved = hook.update_service(preview(pinned, service_id, image, 2, SHA3, slot="b"))
    assert {t.tag: (t.revision, t.percent) for t in moved.traffic_statuses} == {
        "pr-1": (rev1, 100),
        "pr-2": (rev3, 0),
    }
    assert front_door(stack, tag_uri(moved, "pr-2") or "") == f"hello-from-pr-2 {rev3}"
    assert hook.delete_revision(f"{name}/revisions/{rev2}") is True
    assert hook.get_revision(f"{name}/revisions/{rev2}") is None
    assert hook.delete_revision(f"{name}/revisions/{rev2}") is False
    # Cloud Run keeps the latest revision: it cannot be deleted even once untagged
    with pytest.raises(gexc.BadRequest):
        hook.delete_revision(f"{name}/revisions/{rev3}")

    # 5. removing tag pr-2 leaves pr-1 and production untouched
    del records["pr-2"]
    untagged = without_tag(moved, "pr-2")
    write_previews(untagged, records)
    after = hook.update_service(untagged, update_mask=["traffic", "annotations"])
    assert tags(after) == {"pr-1"}
    assert tag_uri(after, "pr-2") is None
    assert [(t.revision, t.percent) for t in after.traffic_statuses] == [(rev1, 100)]
    assert read_previews(after) == records


def test_transient_503_is_retried(
    stack: dict[str, Any], hook: CloudRunPreviewHook, service_id: str, image: str
) -> None:
    faults = f"{stack['cloud_run_url']}/_emulator/faults"
    name = service_path(PROJECT, REGION, service_id)
    service = hook.update_service(
        preview(run_v2.Service(name=name), service_id, image, 1, SHA1), allow_missing=True
    )
    fault = {"method": "UpdateService", "status": 503, "count": 1}

    # the fault is real: the client without faye's retry fails on it
    requests.post(faults, json=fault, timeout=5).raise_for_status()
    request = run_v2.UpdateServiceRequest(service=service)
    with pytest.raises(gexc.ServiceUnavailable):
        hook.services_client.update_service(request=request, retry=None)

    # faye's retry path rides over it
    requests.post(faults, json=fault, timeout=5).raise_for_status()
    service.annotations["faye.dev/retried"] = "yes"
    updated = hook.update_service(service, update_mask=["annotations"])
    assert updated.annotations["faye.dev/retried"] == "yes"
    assert requests.get(faults, timeout=5).json()["faults"] == []


def test_429_is_retried_and_500_is_not(
    stack: dict[str, Any], hook: CloudRunPreviewHook, service_id: str, image: str
) -> None:
    """Only TRANSIENT_ERRORS are repeated: a 500 is a real error, reported at the first answer."""
    faults = f"{stack['cloud_run_url']}/_emulator/faults"
    name = service_path(PROJECT, REGION, service_id)
    hook.update_service(preview(run_v2.Service(name=name), service_id, image, 1, SHA1), allow_missing=True)

    rule = {"method": "GetService", "status": 429, "count": 2}
    requests.post(faults, json=rule, timeout=5).raise_for_status()
    found = hook.get_service(project=PROJECT, region=REGION, service=service_id)
    assert found is not None and found.name == name
    assert requests.get(faults, timeout=5).json()["faults"] == []  # both 429s were met, then success

    rule = {"method": "GetService", "status": 500, "count": 2}
    requests.post(faults, json=rule, timeout=5).raise_for_status()
    try:
        with pytest.raises(gexc.InternalServerError):
            hook.get_service(project=PROJECT, region=REGION, service=service_id)
        [left] = requests.get(faults, timeout=5).json()["faults"]
        assert left["count"] == 1  # asked once, not retried
    finally:
        requests.delete(faults, timeout=5)


def test_stale_etag_is_refused_and_modify_service_reapplies(
    hook: CloudRunPreviewHook, service_id: str, image: str
) -> None:
    name = service_path(PROJECT, REGION, service_id)
    stale = hook.update_service(
        preview(run_v2.Service(name=name), service_id, image, 1, SHA1), allow_missing=True
    )
    fresh = run_v2.Service.deserialize(run_v2.Service.serialize(stale))
    fresh.annotations["faye.dev/writer"] = "first"
    hook.update_service(fresh, update_mask=["annotations"])
    stale.annotations["faye.dev/writer"] = "stale"
    with pytest.raises(CONFLICT_ERRORS):
        hook.update_service(stale, update_mask=["annotations"])

    calls: list[str] = []

    def change(current: run_v2.Service | None) -> tuple[run_v2.Service, list[str]]:
        assert current is not None
        if not calls:  # someone else writes between our read and our write, once
            other = run_v2.Service.deserialize(run_v2.Service.serialize(current))
            other.annotations["faye.dev/other"] = "was-here"
            hook.update_service(other, update_mask=["annotations"])
        calls.append(current.etag)
        current.annotations["faye.dev/writer"] = "modify"
        return current, ["annotations"]

    result = hook.modify_service(project=PROJECT, region=REGION, service=service_id, change=change)
    assert result is not None
    assert len(calls) == 2 and calls[0] != calls[1]
    assert result.annotations["faye.dev/writer"] == "modify"
    assert result.annotations["faye.dev/other"] == "was-here"


def test_start_update_and_poll_the_operation(hook: CloudRunPreviewHook, service_id: str, image: str) -> None:
    name = service_path(PROJECT, REGION, service_id)
    operation = hook.start_update_service(
        preview(run_v2.Service(name=name), service_id, image, 1, SHA1), allow_missing=True
    )
    assert operation.startswith(f"projects/{PROJECT}/locations/{REGION}/operations/")
    deadline = time.monotonic() + 120
    state = hook.get_operation(operation)
    while not state["done"] and time.monotonic() < deadline:
        time.sleep(0.5)
        state = hook.get_operation(operation)
    assert state == {"name": operation, "done": True, "error": None}
    service = hook.get_service(project=PROJECT, region=REGION, service=service_id)
    assert service is not None and tag_revision(service, "pr-1") == revision_name(service_id, 1, SHA1)
