"""Revisions that fail to start, and an emulator restart that keeps state and adopts its containers."""

from __future__ import annotations

import json

import docker
import pytest
import requests
from emulator_support import (
    Emulator,
    Images,
    eventually,
    kill_revision,
    patch,
    pinned,
    revision_of,
    running_revisions,
    short,
    tag_target,
    template,
)
from emulator_support import create as create_service
from google.api_core import exceptions
from google.cloud import run_v2

pytestmark = pytest.mark.integration
FAILED = run_v2.Condition.State.CONDITION_FAILED


def test_a_container_that_never_listens_leaves_traffic_where_it_was(
    emulator: Emulator, images: Images
) -> None:
    client = emulator.services()
    service = create_service(client, "run-fail", images.marker)
    good = short(service.latest_ready_revision)

    service.template = template(images.silent, revision="run-fail-silent")
    op = patch(client, service, "template")
    assert not op.done()  # the operation waits for the container
    with pytest.raises(exceptions.FailedPrecondition) as raised:
        op.result(timeout=60)
    assert "Revision 'run-fail-silent' is not ready and cannot serve traffic." in str(raised.value)
    assert "failed to start and listen on the port defined provided by the PORT=" in str(raised.value)

    after = client.get_service(name=service.name)
    assert short(after.latest_created_revision) == "run-fail-silent"
    assert short(after.latest_ready_revision) == good
    assert after.terminal_condition.state == FAILED
    assert "not ready and cannot serve traffic" in after.terminal_condition.message
    assert [s.revision for s in after.traffic_statuses] == [good]
    assert after.observed_generation == after.generation and not after.reconciling
    revision = emulator.revisions().get_revision(name=after.latest_created_revision)
    assert revision.conditions[0].type_ == "Ready" and revision.conditions[0].state == FAILED
    assert "PORT=" in revision.conditions[0].message
    assert revision_of(emulator.get_via(after.uri)) == good  # still served by the ready revision

    # Routing a tag to the failed revision is refused the same way; a good template recovers.
    after.traffic = [pinned(good), tag_target("run-fail-silent", "broken")]
    with pytest.raises(exceptions.FailedPrecondition, match="not ready"):
        patch(client, after, "traffic").result(timeout=60)
    fixed = client.get_service(name=service.name)
    fixed.template = template(images.marker, greeting="fixed")
    fixed.traffic = []
    recovered = patch(client, fixed, "template", "traffic").result(timeout=60)
    assert recovered.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    assert "greeting=fixed" in emulator.get_via(recovered.uri).text


def test_a_container_that_exits_fails_at_once_with_its_exit_code(emulator: Emulator, images: Images) -> None:
    """Seen as ended (podman says "stopped" where Docker says "exited"), not waited out to the timeout."""
    client = emulator.services()
    service = create_service(client, "run-exit", images.marker)
    good = short(service.latest_ready_revision)

    crashing = template(images.marker, revision="run-exit-crash")
    crashing.containers[0].command = ["sh", "-c", "echo crashing; exit 3"]
    service.template = crashing
    with pytest.raises(exceptions.FailedPrecondition) as raised:
        patch(client, service, "template").result(timeout=60)
    assert "within the allocated timeout" not in str(raised.value)
    assert "Revision 'run-exit-crash' is not ready and cannot serve traffic." in str(raised.value)
    assert "Container called exit(3)." in str(raised.value)
    after = client.get_service(name=service.name)
    assert short(after.latest_ready_revision) == good
    assert [s.revision for s in after.traffic_statuses] == [good]


def test_restart_keeps_state_and_adopts_containers(fresh_emulator: Emulator, images: Images) -> None:
    emulator = fresh_emulator
    emulator.start()
    client = emulator.services()
    service = create_service(client, "run-keep", images.marker)
    main = short(service.latest_ready_revision)
    service.template = template(images.marker, revision="run-keep-pr-3", greeting="pr")
    service.traffic = [pinned(main), tag_target("run-keep-pr-3", "pr-3")]
    before = patch(client, service, "template", "traffic").result(timeout=60)
    tag_uri = before.traffic_statuses[1].uri

    emulator.stop()
    emulator.env = {"FAYE_EMULATOR_FAULTS": json.dumps({"method": "GetService", "status": 500, "count": 1})}
    emulator.start()
    client = emulator.services()
    with pytest.raises(exceptions.InternalServerError):  # the fault set by env at start
        client.get_service(name=before.name, retry=None)

    after = client.get_service(name=before.name)
    assert (after.etag, after.generation, after.latest_ready_revision) == (
        before.etag,
        before.generation,
        before.latest_ready_revision,
    )
    assert [(s.revision, s.tag, s.uri) for s in after.traffic_statuses] == [
        (s.revision, s.tag, s.uri) for s in before.traffic_statuses
    ]
    assert len(list(emulator.revisions().list_revisions(parent=after.name))) == 2
    assert revision_of(emulator.get_via(tag_uri)) == "run-keep-pr-3"
    assert revision_of(emulator.get_via(after.uri)) == main
    assert {"run-keep-pr-3", main} <= running_revisions(emulator.docker_url)
    assert requests.get(f"{emulator.url}/_emulator/faults", timeout=5).json() == {"faults": []}

    # A restart while a deploy is in flight: the operation survives and completes afterwards.
    after.template = template(images.marker, revision="run-keep-pr-4", greeting="later")
    after.traffic = [*after.traffic, tag_target("run-keep-pr-4", "pr-4")]
    in_flight = patch(client, after, "template", "traffic")
    emulator.stop()
    emulator.env = {}
    emulator.start()
    finished = in_flight.result(timeout=60)  # the same client object polls the restarted server
    pr4 = next(s.uri for s in finished.traffic_statuses if s.tag == "pr-4")
    assert revision_of(emulator.get_via(pr4)) == "run-keep-pr-4"
    assert emulator.services().get_service(name=after.name).etag == finished.etag

    # Reconciled at start, before any request: a serving container that died while the emulator was
    # down runs again, and a container of this state folder that no revision owns is removed.
    emulator.stop()
    assert kill_revision(emulator.docker_url, "run-keep-pr-3") == 1
    host = docker.DockerClient(base_url=emulator.docker_url, version="1.41")
    stray = host.containers.run(
        images.marker,
        detach=True,
        network_mode="host",
        environment={"PORT": "1", "K_REVISION": "run-keep-gone"},
        labels={
            "faye.emulator.state": str(emulator.state_dir),
            "faye.emulator.revision": f"{after.name}/revisions/run-keep-gone",
        },
    )
    assert eventually(lambda: "run-keep-pr-3" not in running_revisions(emulator.docker_url))
    emulator.start()
    assert eventually(lambda: "run-keep-pr-3" in running_revisions(emulator.docker_url), timeout=30)
    assert eventually(lambda: "run-keep-gone" not in running_revisions(emulator.docker_url), timeout=30)
    with pytest.raises(docker.errors.NotFound):
        host.containers.get(stray.id)
    assert revision_of(emulator.get_via(tag_uri)) == "run-keep-pr-3"


def test_a_serving_container_that_dies_is_replaced(emulator: Emulator, images: Images) -> None:
    service = create_service(emulator.services(), "run-crash", images.marker)
    revision = short(service.latest_ready_revision)
    assert kill_revision(emulator.docker_url, revision) == 1
    # The next request finds it gone (502) and has it replaced.
    assert eventually(lambda: emulator.get_via(service.uri).status_code == 502)

    def answers() -> bool:
        reply = emulator.get_via(service.uri)
        return reply.status_code == 200 and revision_of(reply) == revision

    assert eventually(answers)
    assert emulator.services().get_service(name=service.name).etag == service.etag
