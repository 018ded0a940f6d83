"""CloudRunPreviewHook against the stack's Cloud Run emulator, through the official client.

Revisions really run on the emulator (containers on the stack's run host), so the test builds a tiny
image that answers ``$GREETING $K_REVISION`` on ``$PORT`` and pushes it to the stack's registry.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from faye_testing import push_serving_image
from google.api_core import exceptions as gexc
from google.cloud import run_v2

from faye_plugin.hooks.cloud_run import (
    CONFLICT_ERRORS,
    CloudRunPreviewHook,
    preview_tag,
    revision_name,
    service_path,
    short_name,
    tag_revision,
    tag_uri,
    tags,
    with_preview_revision,
    without_tag,
)
from faye_plugin.preview_state import Preview, PreviewState

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
    return push_serving_image(stack, tmp_path_factory.mktemp("greeter"), "greeter", SERVE)


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
    records = PreviewState(
        {1: Preview(1, int(time.time()) + 3600, SHA1, rev1, "a", deployed_at=int(time.time()))}
    )
    records.write(first)
    created = hook.update_service(first, allow_missing=True)
    assert short_name(created.latest_ready_revision) == rev1
    assert [(t.revision, t.percent, t.tag) for t in created.traffic_statuses] == [(rev1, 100, "pr-1")]
    uri1 = tag_uri(created, "pr-1")
    assert uri1 is not None
    assert front_door(stack, uri1) == f"hello-from-pr-1 {rev1}"
    assert PreviewState.read(created) == records
    # the exact revision is recorded on itself: labels pr and sha
    revision = hook.get_revision(f"{name}/revisions/{rev1}")
    assert revision is not None
    assert (revision.labels["faye-pr"], revision.labels["faye-sha"]) == ("1", SHA1)

    # 2. a second preview gets a tag and no traffic; production stays on rev1
    second = preview(created, service_id, image, 2, SHA2, slot="b")
    records = PreviewState(
        {
            **records.previews,
            2: Preview(2, int(time.time()) + 7200, SHA2, rev2, "b", deployed_at=int(time.time())),
        }
    )
    records.write(second)
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
    records = records.pin(1, True)
    records.write(updated)
    pinned = hook.update_service(updated, update_mask=["annotations"])
    assert PreviewState.read(pinned).get(1).pinned is True  # type: ignore[union-attr]
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
    records = records.remove(2)
    untagged = without_tag(moved, "pr-2")
    records.write(untagged)
    after = hook.update_service(untagged, update_mask=["traffic", "annotations"])
    assert tags(after) == {"pr-1"}
    assert tag_uri(after, "pr-2") is None
    assert [(t.revision, t.percent) for t in after.traffic_statuses] == [(rev1, 100)]
    assert PreviewState.read(after) == records


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

    # wait=False (the deploy's PATCH): the same conflict cycle, then the operation's name, not waited for
    seen: list[str] = []

    def change_again(current: run_v2.Service | None) -> tuple[run_v2.Service, list[str]]:
        assert current is not None
        if not seen:
            other = run_v2.Service.deserialize(run_v2.Service.serialize(current))
            other.annotations["faye.dev/other"] = "here-again"
            hook.update_service(other, update_mask=["annotations"])
        seen.append(current.etag)
        current.annotations["faye.dev/writer"] = "start"
        return current, ["annotations"]

    operation = hook.modify_service(
        project=PROJECT, region=REGION, service=service_id, change=change_again, wait=False
    )
    assert operation is not None and "/operations/" in operation and len(seen) == 2
    nothing = hook.modify_service(
        project=PROJECT, region=REGION, service=service_id, change=lambda current: None, wait=False
    )
    assert nothing is None


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


def test_expired_previews_of_a_service_go_in_one_write(
    stack: dict[str, Any],
    hook: CloudRunPreviewHook,
    service_id: str,
    image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faye_cleanup's removal: every expired, unpinned preview of the service goes in ONE UpdateService;
    a live one, a pinned one and one redeployed between the listing and the write are kept."""
    from faye_plugin.catalogue import CloudRunTarget, ServiceSpec
    from faye_plugin.hooks.proxy import ProxyHook
    from faye_plugin.removal import remove_expired_previews

    proxy_conn = {
        "conn_type": "faye_proxy",
        "host": stack["proxy_admin_url"],
        "extra": {"server": "previews"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_FAYE_PROXY", json.dumps(proxy_conn))
    name = service_path(PROJECT, REGION, service_id)
    now = int(time.time())
    rev1 = revision_name(service_id, 1, SHA1)
    live = Preview(1, now + 3600, SHA1, rev1, "a", deployed_at=now)
    expired = {pr: Preview(pr, now - 60, SHA1, rev1, "", deployed_at=now - 600) for pr in range(2, 9)}
    pinned = Preview(9, now - 60, SHA1, rev1, "", deployed_at=now - 600, pinned=True)
    state = PreviewState({1: live, **expired, 9: pinned})
    first = preview(run_v2.Service(name=name), service_id, image, 1, SHA1)
    first.traffic.extend(
        run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
            revision=rev1,
            tag=preview_tag(pr),
        )
        for pr in range(2, 10)
    )
    state.write(first)
    created = hook.update_service(first, allow_missing=True)
    assert tags(created) == {preview_tag(pr) for pr in range(1, 10)}

    spec = ServiceSpec.__new__(ServiceSpec)  # only what the removal reads: the name and the target
    object.__setattr__(spec, "name", service_id)
    object.__setattr__(spec, "cloud_run", CloudRunTarget(project=PROJECT, region=REGION, service=service_id))
    writes: list[list[str] | None] = []
    update = hook.update_service

    def counted(service: run_v2.Service, **kwargs: Any) -> run_v2.Service:
        writes.append(kwargs.get("update_mask"))
        if len(writes) == 1:  # PR 8 is redeployed after the listing, before this write lands
            extended = PreviewState.read(hook.get_service(project=PROJECT, region=REGION, service=service_id))
            fresh = hook.get_service(project=PROJECT, region=REGION, service=service_id)
            assert fresh is not None
            extended.extend(8, now + 3600).write(fresh)
            update(fresh, update_mask=["annotations"])
        return update(service, **kwargs)

    monkeypatch.setattr(hook, "update_service", counted)
    results = remove_expired_previews(
        spec, [*range(2, 9), 9], cloud_run=hook, proxy=ProxyHook(), now=time.time()
    )
    after = hook.get_service(project=PROJECT, region=REGION, service=service_id)
    assert after is not None
    left = PreviewState.read(after)
    assert sorted(p.pr for p in left) == [1, 8, 9]  # live, redeployed meanwhile, pinned
    assert tags(after) == {"pr-1", "pr-8", "pr-9"}
    assert [(t.revision, t.percent) for t in after.traffic_statuses if t.percent] == [(rev1, 100)]
    removed = sorted(r.pr for r in results if r.record_removed)
    assert removed == [2, 3, 4, 5, 6, 7]
    # the first write lost its etag to the redeploy and was redone on the fresh state: one write of
    # the removal landed (two attempts), whatever the number of previews
    assert len(writes) == 2, writes
