"""The preview path through the official client: create, tag a second revision, move traffic, untag."""

from __future__ import annotations

import json

import pytest
from emulator_support import (
    PARENT,
    Emulator,
    Images,
    eventually,
    patch,
    pinned,
    revision_of,
    running_revisions,
    service_name,
    short,
    tag_target,
    template,
)
from emulator_support import create as create_service
from google.api_core import exceptions
from google.cloud import run_v2
from google.longrunning import operations_pb2

pytestmark = pytest.mark.integration


def test_create_serves_the_first_revision(emulator: Emulator, images: Images) -> None:
    client = emulator.services()
    service = create_service(client, "life-create", images.marker, greeting="first")

    assert service.uri == f"http://life-create.run.localhost:{emulator.port}"
    assert list(service.urls) == [service.uri]
    assert service.generation == 1 and service.observed_generation == 1
    assert service.etag and not service.reconciling
    assert service.latest_ready_revision == service.latest_created_revision
    assert service.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    first = short(service.latest_ready_revision)
    assert first.startswith("life-create-00001-")
    answer = emulator.get_via(service.uri)
    assert revision_of(answer) == first and "greeting=first" in answer.text

    assert client.get_service(name=service.name).etag == service.etag
    assert service.name in [s.name for s in client.list_services(parent=PARENT)]
    revisions = list(emulator.revisions().list_revisions(parent=service.name))
    assert [r.name for r in revisions] == [service.latest_created_revision]
    assert revisions[0].conditions[0].state == run_v2.Condition.State.CONDITION_SUCCEEDED


def test_preview_tag_move_traffic_and_untag(emulator: Emulator, images: Images) -> None:
    client = emulator.services()
    service = create_service(client, "life-preview", images.marker, greeting="main")
    main = short(service.latest_ready_revision)

    # faye's deploy: a named revision, labels, a tag with no traffic, the previews annotation, the etag.
    service.template = template(
        images.marker,
        revision="life-preview-pr-7-abc1234",
        greeting="preview",
        **{"faye-pr": "7", "faye-slot": "a"},
    )
    service.traffic = [pinned(main), tag_target("life-preview-pr-7-abc1234", "pr-7")]
    service.annotations = {"faye.dev/previews": json.dumps({"pr-7": {"slot": "a"}})}
    op = patch(client, service, "template", "traffic", "annotations", allow_missing=True)
    deployed = op.result(timeout=60)

    assert deployed.generation == 2 and deployed.observed_generation == 2
    assert deployed.etag != service.etag
    assert short(deployed.latest_created_revision) == "life-preview-pr-7-abc1234"
    tag_uri = f"http://pr-7---life-preview.run.localhost:{emulator.port}"
    statuses = {(s.revision, s.percent, s.tag, s.uri) for s in deployed.traffic_statuses}
    assert statuses == {(main, 100, "", ""), ("life-preview-pr-7-abc1234", 0, "pr-7", tag_uri)}
    assert deployed.annotations["faye.dev/previews"] == json.dumps({"pr-7": {"slot": "a"}})
    assert revision_of(emulator.get_via(tag_uri)) == "life-preview-pr-7-abc1234"
    assert revision_of(emulator.get_via(deployed.uri)) == main
    revision = emulator.revisions().get_revision(name=deployed.latest_created_revision)
    assert dict(revision.labels) == {"faye-pr": "7", "faye-slot": "a"}
    assert revision.service == deployed.name

    # Move all traffic to the preview: no new revision.
    deployed.traffic = [pinned("life-preview-pr-7-abc1234"), tag_target("life-preview-pr-7-abc1234", "pr-7")]
    moved = patch(client, deployed, "traffic").result(timeout=60)
    assert moved.latest_created_revision == deployed.latest_created_revision
    assert len(list(emulator.revisions().list_revisions(parent=moved.name))) == 2
    assert revision_of(emulator.get_via(moved.uri)) == "life-preview-pr-7-abc1234"
    # It lost all traffic and tags: its container is stopped.
    assert eventually(lambda: main not in running_revisions(emulator.docker_url))

    # Remove the tag: its URL stops answering, the revision keeps serving the service URL.
    moved.traffic = [pinned("life-preview-pr-7-abc1234")]
    untagged = patch(client, moved, "traffic").result(timeout=60)
    assert [s.tag for s in untagged.traffic_statuses] == [""]
    assert emulator.get_via(tag_uri).status_code == 404
    assert revision_of(emulator.get_via(untagged.uri)) == "life-preview-pr-7-abc1234"

    # Tag the retired first revision again: it runs again and answers on its tag.
    untagged.traffic = [pinned("life-preview-pr-7-abc1234"), tag_target(main, "old")]
    retagged = patch(client, untagged, "traffic").result(timeout=60)
    old_uri = next(s.uri for s in retagged.traffic_statuses if s.tag == "old")
    assert revision_of(emulator.get_via(old_uri)) == main


def test_latest_traffic_follows_a_new_template(emulator: Emulator, images: Images) -> None:
    client = emulator.services()
    service = create_service(client, "life-latest", images.marker, greeting="one")
    service.template = template(images.marker, greeting="two")
    updated = patch(client, service, "template").result(timeout=60)
    assert short(updated.latest_created_revision).startswith("life-latest-00002-")
    assert updated.latest_ready_revision == updated.latest_created_revision
    assert "greeting=two" in emulator.get_via(updated.uri).text

    # The same template again is no change at all: no revision, no new generation.
    same = patch(client, updated, "template").result(timeout=60)
    assert same.generation == updated.generation and same.etag == updated.etag

    # A nested mask path changes only that part of the template, and that is a new revision too.
    same.template.containers[0].env[0].value = "three"
    same.template.labels = {"ignored": "yes"}  # outside the mask: not applied
    nested = patch(client, same, "template.containers").result(timeout=60)
    assert short(nested.latest_created_revision).startswith("life-latest-00003-")
    assert "greeting=three" in emulator.get_via(nested.uri).text
    assert not nested.template.labels


def test_allow_missing_creates_and_validate_only_stores_nothing(emulator: Emulator, images: Images) -> None:
    client = emulator.services()
    fresh = run_v2.Service(name=service_name("life-upsert"), template=template(images.marker))
    with pytest.raises(exceptions.NotFound, match="life-upsert"):
        patch(client, fresh, "template")
    created = patch(client, fresh, "template", allow_missing=True).result(timeout=60)
    assert created.generation == 1 and created.latest_ready_revision

    dry = client.create_service(
        request=run_v2.CreateServiceRequest(
            parent=PARENT,
            service_id="life-dry",
            service=run_v2.Service(template=template(images.marker)),
            validate_only=True,
        )
    )
    assert dry.result(timeout=10).name == service_name("life-dry")
    with pytest.raises(exceptions.NotFound):
        client.get_service(name=service_name("life-dry"))

    created.description = "only a dry run"
    dry_patch = client.update_service(
        request=run_v2.UpdateServiceRequest(service=created, validate_only=True)
    )
    assert dry_patch.result(timeout=10).description == "only a dry run"
    client.delete_service(request=run_v2.DeleteServiceRequest(name=created.name, validate_only=True))
    stored = client.get_service(name=created.name)
    assert (stored.description, stored.etag, stored.generation) == ("", created.etag, created.generation)


def test_delete_with_etag_and_operations(emulator: Emulator, images: Images) -> None:
    client = emulator.services()
    service = create_service(client, "life-delete", images.marker)
    with pytest.raises(exceptions.Conflict, match="etag"):
        client.delete_service(request=run_v2.DeleteServiceRequest(name=service.name, etag='"stale"'))
    op = client.delete_service(request=run_v2.DeleteServiceRequest(name=service.name, etag=service.etag))
    assert op.result(timeout=10).name == service.name
    with pytest.raises(exceptions.NotFound, match="Resource 'life-delete' of kind 'SERVICE'"):
        client.get_service(name=service.name)
    with pytest.raises(exceptions.NotFound):
        emulator.revisions().get_revision(name=service.latest_created_revision)

    stored = client.get_operation({"name": op.operation.name})
    assert stored.done and stored.name == op.operation.name
    waited = client.wait_operation({"name": op.operation.name, "timeout": {"seconds": 5}})
    if isinstance(waited, bytes):  # google-cloud-run's gRPC transport leaves WaitOperation's answer undecoded
        waited = operations_pb2.Operation.FromString(waited)
    assert waited.done and waited.name == op.operation.name
    assert op.operation.name in [o.name for o in client.list_operations({"name": PARENT}).operations]


def test_revision_delete_only_when_retired(emulator: Emulator, images: Images) -> None:
    client, revisions = emulator.services(), emulator.revisions()
    service = create_service(client, "life-revdel", images.marker, greeting="one")
    first = service.latest_created_revision
    service.template = template(images.marker, revision="life-revdel-two", greeting="two")
    service.traffic = [pinned(short(first)), tag_target("life-revdel-two", "next")]
    tagged = patch(client, service, "template", "traffic").result(timeout=60)
    with pytest.raises(exceptions.BadRequest, match="cannot be deleted"):
        revisions.delete_revision(name=tagged.latest_created_revision)  # holds a tag, and is the latest
    with pytest.raises(exceptions.BadRequest, match="cannot be deleted"):
        revisions.delete_revision(name=first)  # holds the traffic

    tagged.traffic = [pinned("life-revdel-two")]
    moved = patch(client, tagged, "traffic").result(timeout=60)
    deleted = revisions.delete_revision(name=first).result(timeout=10)
    assert deleted.name == first
    assert [r.name for r in revisions.list_revisions(parent=moved.name)] == [moved.latest_created_revision]
    with pytest.raises(exceptions.NotFound, match="of kind 'REVISION'"):
        revisions.get_revision(name=first)
