"""Cloud Run's limits, filled through the official client: 2,000 tags per project and region (at the
real number), 1,000 revisions per service (a smaller number, same rule), annotation and label rules.

The tag tests use projects of their own: tags count per project and region, and the shared emulator's
other tests hold tags in projects/local.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from emulator_support import (
    Emulator,
    Images,
    field_violations,
    patch,
    pinned,
    short,
    tag_target,
    template,
)
from google.api_core import exceptions
from google.cloud import run_v2

pytestmark = pytest.mark.integration
KIB_256 = 256 * 1024


def create_in(client: run_v2.ServicesClient, parent: str, service_id: str, image: str) -> run_v2.Service:
    op = client.create_service(
        parent=parent, service_id=service_id, service=run_v2.Service(template=template(image))
    )
    return op.result(timeout=60)


def with_tags(client: run_v2.ServicesClient, service: run_v2.Service, *tags: str) -> run_v2.Service:
    """The service with `tags` added on its serving revision (no traffic percentage)."""
    revision = short(service.latest_ready_revision)
    service.traffic = [*service.traffic, *(tag_target(revision, tag) for tag in tags)]
    return patch(client, service, "traffic").result(timeout=120)


def tags_of(service: run_v2.Service) -> list[str]:
    return [t.tag for t in service.traffic if t.tag]


def test_the_tag_limit_deletes_traffic_less_tags_of_the_writing_service_oldest_first(
    emulator: Emulator, images: Images
) -> None:
    """At Cloud Run's real 2,000: full is fine, one more deletes the oldest tag without traffic."""
    assert emulator.env.get("FAYE_EMULATOR_MAX_TAGS") is None  # the real limit
    client = emulator.services()
    parent = f"projects/limits-{emulator.transport}/locations/us-central1"
    big = create_in(client, parent, "big", images.marker)
    big = with_tags(client, big, *(f"a-{n:04d}" for n in range(1994)))
    small = create_in(client, parent, "small", images.marker)
    main = short(small.latest_ready_revision)
    small.traffic = [
        tag_target(main, "b-main", percent=100),
        tag_target(main, "b-old-1"),
        tag_target(main, "b-old-2"),
    ]
    small = patch(client, small, "traffic").result(timeout=60)
    small = with_tags(client, small, "b-mid-1", "b-mid-2", "b-mid-3")
    assert len(tags_of(big)) + len(tags_of(small)) == 2000  # at the limit: nothing deleted

    small = with_tags(client, small, "b-new-1")
    assert tags_of(small) == ["b-main", "b-old-2", "b-mid-1", "b-mid-2", "b-mid-3", "b-new-1"]
    assert [s.tag for s in small.traffic_statuses if s.tag] == tags_of(small)
    small = with_tags(client, small, "b-new-2", "b-new-3")  # two over: the two oldest traffic-less tags go
    assert tags_of(small) == ["b-main", "b-mid-2", "b-mid-3", "b-new-1", "b-new-2", "b-new-3"]
    assert len(tags_of(client.get_service(name=big.name))) == 1994  # other services keep theirs

    big = with_tags(client, client.get_service(name=big.name), "a-late")
    assert tags_of(big)[0] == "a-0001" and tags_of(big)[-1] == "a-late" and len(tags_of(big)) == 1994
    assert emulator.get_via(next(s.uri for s in big.traffic_statuses if s.tag == "a-late")).status_code == 200


@pytest.fixture
def small_limits(fresh_emulator: Emulator) -> Iterator[Emulator]:
    fresh_emulator.env = {"FAYE_EMULATOR_MAX_TAGS": "3", "FAYE_EMULATOR_MAX_REVISIONS": "3"}
    fresh_emulator.start()
    yield fresh_emulator


def test_a_tag_write_with_nothing_to_delete_is_refused(small_limits: Emulator, images: Images) -> None:
    client = small_limits.services()
    parent = "projects/local/locations/europe-west1"
    full = with_tags(client, create_in(client, parent, "full", images.marker), "t-1", "t-2", "t-3")
    other = create_in(client, parent, "other", images.marker)
    revision = short(other.latest_ready_revision)
    other.traffic = [pinned(revision), tag_target(revision, "o-1")]
    with pytest.raises(exceptions.BadRequest) as raised:
        patch(client, other, "traffic")
    assert raised.value.grpc_status_code in (None, grpc.StatusCode.FAILED_PRECONDITION)
    [(field, description)] = field_violations(raised.value)
    assert field == "Violation in UpdateServiceRequest.service.traffic"
    assert description.startswith("Revision tag limit reached: the project and region already have 3 tags")
    assert f"{field}: {description}" in raised.value.message
    assert tags_of(client.get_service(name=full.name)) == ["t-1", "t-2", "t-3"]
    assert tags_of(client.get_service(name=other.name)) == []


def test_the_revision_limit_deletes_the_oldest_unused_revisions(
    small_limits: Emulator, images: Images
) -> None:
    client, revisions = small_limits.services(), small_limits.revisions()
    service = create_in(client, "projects/local/locations/europe-west1", "revs", images.marker)
    first = short(service.latest_ready_revision)

    def deploy(revision: str, *traffic: run_v2.TrafficTarget) -> run_v2.Service:
        current = client.get_service(name=service.name)
        current.template = template(images.marker, revision=revision, greeting=revision)
        current.traffic = [pinned(first), *traffic]
        return patch(client, current, "template", "traffic").result(timeout=60)

    def names() -> list[str]:
        return sorted(short(r.name) for r in revisions.list_revisions(parent=service.name))

    deploy("revs-two")
    deploy("revs-three")
    assert names() == sorted([first, "revs-two", "revs-three"])  # at the limit
    deploy("revs-four")  # one over: the oldest revision that serves nothing goes
    assert names() == sorted([first, "revs-three", "revs-four"])
    with pytest.raises(exceptions.NotFound):
        revisions.get_revision(name=f"{service.name}/revisions/revs-two")
    deploy("revs-five", tag_target("revs-three", "keep"))  # the tagged one and the serving one stay
    assert names() == sorted([first, "revs-three", "revs-five"])

    before = client.get_service(name=service.name)
    with pytest.raises(exceptions.BadRequest) as raised:  # all three referenced: nothing to delete
        deploy("revs-six", tag_target("revs-three", "keep"), tag_target("revs-five", "five"))
    assert "Revision limit reached" in raised.value.message
    assert [f for f, _ in field_violations(raised.value)] == [
        "Violation in UpdateServiceRequest.service.template"
    ]
    after = client.get_service(name=service.name)
    assert (after.etag, names()) == (before.etag, sorted([first, "revs-three", "revs-five"]))


@pytest.mark.parametrize(
    ("key", "detail"),
    [
        ("bad key", "name part must consist of alphanumeric characters"),
        ("a/b/c", "a qualified name must consist of"),
        ("-x", "name part must consist of"),
        ("/x", "prefix part must be non-empty"),
        ("exa_mple.com/x", "prefix part a lowercase RFC 1123 subdomain must consist of"),
        ("example.com/" + "x" * 64, "name part must be no more than 63 characters"),
        ("x" * 254 + "/y", "prefix part must be no more than 253 characters"),
    ],
)
def test_annotation_keys_follow_kubernetes_rules(
    emulator: Emulator, images: Images, key: str, detail: str
) -> None:
    client = emulator.services()
    service = client.get_service(name=base_service(emulator, images).name)
    service.annotations = {key: "v"}
    with pytest.raises(exceptions.BadRequest) as raised:
        patch(client, service, "annotations")
    [(field, description)] = field_violations(raised.value)
    assert field == "Violation in UpdateServiceRequest.service.annotations"
    assert description.startswith(f'Invalid value: "{key}": {detail}')
    assert raised.value.message.endswith(f"{field}: {description}")
    assert client.get_service(name=service.name).etag == service.etag


_BASES: dict[str, run_v2.Service] = {}


def base_service(emulator: Emulator, images: Images) -> run_v2.Service:
    """One service per transport that the metadata tests try to change."""
    if emulator.transport not in _BASES:
        client = emulator.services()
        _BASES[emulator.transport] = create_in(
            client,
            "projects/local/locations/europe-west1",
            f"limits-meta-{emulator.transport}",
            images.marker,
        )
    return _BASES[emulator.transport]


def test_annotations_may_hold_256_kib_in_all(emulator: Emulator, images: Images) -> None:
    client = emulator.services()
    service = client.get_service(name=base_service(emulator, images).name)
    key = "faye.dev/previews"
    service.annotations = {key: "x" * (KIB_256 - len(key))}  # exactly at the limit
    stored = patch(client, service, "annotations").result(timeout=60)
    assert len(stored.annotations[key]) == KIB_256 - len(key)

    for where in ("service", "template"):
        current = client.get_service(name=service.name)
        big = {key: "x" * (KIB_256 - len(key)), "y": "z"}  # one key and one byte over
        if where == "service":
            current.annotations = big
        else:
            current.template.annotations = big
        with pytest.raises(exceptions.BadRequest) as raised:
            patch(client, current, "annotations" if where == "service" else "template")
        path = "service" if where == "service" else "service.template"
        expected = (
            f"Violation in UpdateServiceRequest.{path}.annotations: Too long: must have at most 262144 bytes"
        )
        assert expected in raised.value.message
        assert field_violations(raised.value) == [
            (expected.rsplit(": Too", 1)[0], "Too long: must have at most 262144 bytes")
        ]
    assert client.get_service(name=service.name).etag == stored.etag


def test_at_most_64_labels(emulator: Emulator, images: Images) -> None:
    client = emulator.services()
    service = client.get_service(name=base_service(emulator, images).name)
    service.labels = {f"l{n}": "v" for n in range(64)}
    stored = patch(client, service, "labels").result(timeout=60)
    assert len(stored.labels) == 64
    stored.labels = {f"l{n}": "v" for n in range(65)}
    with pytest.raises(exceptions.BadRequest, match="at most 64") as raised:
        patch(client, stored, "labels")
    assert [f for f, _ in field_violations(raised.value)] == [
        "Violation in UpdateServiceRequest.service.labels"
    ]
