"""Every rule the emulator enforces, checked over plain HTTP (status, error body) and through the client.

After each refused write the stored service must be exactly as it was.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from emulator_support import (
    PARENT,
    Emulator,
    Images,
    error_of,
    patch,
    pinned,
    service_name,
    short,
    template,
)
from emulator_support import create as create_service
from google.api_core import exceptions
from google.cloud import run_v2
from google.protobuf import field_mask_pb2, json_format

pytestmark = pytest.mark.integration

SERVICE_ID = "bad-input"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"


@pytest.fixture(scope="module")
def base(emulator: Emulator, images: Images) -> dict[str, Any]:
    """A stored service (as JSON) that every bad request tries to change."""
    create_service(emulator.services(), SERVICE_ID, images.marker)
    return dict(requests.get(f"{emulator.url}/v2/{service_name(SERVICE_ID)}", timeout=5).json())


def first(service: dict[str, Any]) -> str:
    return short(service["latestCreatedRevision"])


def with_traffic(*targets: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(service: dict[str, Any]) -> None:
        service["traffic"] = [
            {k: (first(service) if v == "R1" else v) for k, v in t.items()} for t in targets
        ]

    return change


def set_key(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(service: dict[str, Any]) -> None:
        node = service
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[keys[-1]] = value

    return change


# (id, change to the service body, updateMask, HTTP status, status, a piece of the message)
PATCH_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, int, str, str]] = [
    (
        "percent-sum",
        with_traffic({"type": REVISION, "revision": "R1", "percent": 90}),
        "traffic",
        400,
        "INVALID_ARGUMENT",
        "must sum to 100",
    ),
    (
        "duplicate-tag",
        with_traffic(
            {"type": REVISION, "revision": "R1", "percent": 100},
            {"type": REVISION, "revision": "R1", "tag": "dup"},
            {"type": REVISION, "revision": "R1", "tag": "dup"},
        ),
        "traffic",
        400,
        "INVALID_ARGUMENT",
        "must be unique",
    ),
    (
        "uppercase-tag",
        with_traffic({"type": REVISION, "revision": "R1", "percent": 100, "tag": "Pr-1"}),
        "traffic",
        400,
        "INVALID_ARGUMENT",
        "lowercase",
    ),
    (
        "short-tag",
        with_traffic({"type": LATEST, "percent": 100}, {"type": REVISION, "revision": "R1", "tag": "ab"}),
        "traffic",
        400,
        "INVALID_ARGUMENT",
        "at least three characters",
    ),
    (
        "tag-too-long",
        with_traffic(
            {"type": LATEST, "percent": 100},
            {"type": REVISION, "revision": "R1", "tag": "t" * (46 - len(SERVICE_ID) + 1)},
        ),
        "traffic",
        400,
        "INVALID_ARGUMENT",
        "cannot exceed 46 characters",
    ),
    (
        "tag-at-limit-is-fine-but-revision-missing",
        with_traffic(
            {"type": LATEST, "percent": 100},
            {"type": REVISION, "revision": "bad-input-nope", "tag": "t" * (46 - len(SERVICE_ID))},
        ),
        "traffic",
        400,
        "INVALID_ARGUMENT",
        "'bad-input-nope' referenced in traffic[1] does not exist",
    ),
    (
        "latest-with-revision",
        with_traffic({"type": LATEST, "revision": "R1", "percent": 100}),
        "traffic",
        400,
        "INVALID_ARGUMENT",
        "must not be set",
    ),
    (
        "revision-without-name",
        with_traffic({"type": REVISION, "percent": 100}),
        "traffic",
        400,
        "INVALID_ARGUMENT",
        "revision is required",
    ),
    (
        "neither-percent-nor-tag",
        with_traffic({"type": LATEST, "percent": 100}, {"type": REVISION, "revision": "R1"}),
        "traffic",
        400,
        "INVALID_ARGUMENT",
        "needs a percent or a tag",
    ),
    (
        "reserved-annotation",
        set_key("annotations", {"run.googleapis.com/ingress": "all"}),
        "annotations",
        400,
        "INVALID_ARGUMENT",
        "run.googleapis.com",
    ),
    ("reserved-label", set_key("labels", {"Faye": "x"}), "labels", 400, "INVALID_ARGUMENT", "Invalid label"),
    (
        "reserved-env",
        set_key("template.containers.0.env", [{"name": "PORT", "value": "1"}]),
        "template",
        400,
        "INVALID_ARGUMENT",
        "reserved env names were provided: PORT",
    ),
    (
        "reserved-env-nested-mask",
        set_key("template.containers.0.env", [{"name": "K_SERVICE", "value": "x"}]),
        "template.containers",
        400,
        "INVALID_ARGUMENT",
        "reserved env names were provided: K_SERVICE",
    ),
    (
        "no-containers",
        set_key("template.containers", []),
        "template",
        400,
        "INVALID_ARGUMENT",
        "at least one container",
    ),
    (
        "revision-prefix",
        set_key("template.revision", "other-name"),
        "template",
        400,
        "INVALID_ARGUMENT",
        "must start with the service name",
    ),
    (
        "unknown-field",
        set_key("bogus", 1),
        "",
        400,
        "INVALID_ARGUMENT",
        "Unknown name \"bogus\" at 'service': Cannot find field.",
    ),
    (
        "unknown-nested-field",
        set_key("template.containers.0.bogus", 1),
        "template",
        400,
        "INVALID_ARGUMENT",
        'Unknown name "bogus"',
    ),
    (
        "wrong-type",
        set_key("labels", "not-a-map"),
        "labels",
        400,
        "INVALID_ARGUMENT",
        "Invalid JSON payload received",
    ),
    ("bad-mask", set_key("description", "x"), "nope", 400, "INVALID_ARGUMENT", "Invalid update mask path"),
    ("output-only-mask", set_key("description", "x"), "uri", 400, "INVALID_ARGUMENT", "cannot be updated"),
    (
        "stale-etag",
        set_key("etag", '"stale"'),
        "description",
        409,
        "ABORTED",
        "does not match its current etag",
    ),
]


def refusal(call: Callable[[], Any]) -> tuple[int, str, str]:
    """(HTTP status, status name, message) of a call through the client that must be refused."""
    with pytest.raises(exceptions.GoogleAPICallError) as raised:
        call()
    error = raised.value
    status = error.grpc_status_code.name if error.grpc_status_code else ""
    return int(error.code or 0), status, error.message


def send_patch(emulator: Emulator, body: dict[str, Any], mask: str) -> tuple[int, str, str]:
    """PATCH `body` as REST JSON, or as the same Service over gRPC (JSON-only mistakes: skipped)."""
    url = f"{emulator.url}/v2/{body['name']}"
    if emulator.transport == "rest":
        answer = requests.patch(
            url, params={"updateMask": mask} if mask else {}, data=json.dumps(body), timeout=5
        )
        error = error_of(answer)
        return answer.status_code, error["status"], error["message"]
    try:
        service = run_v2.Service.wrap(json_format.ParseDict(body, run_v2.Service.pb()()))
    except json_format.ParseError:
        pytest.skip("a JSON-only mistake: a gRPC request cannot carry it")
    request = run_v2.UpdateServiceRequest(service=service)
    if mask:
        request.update_mask = field_mask_pb2.FieldMask(paths=mask.split(","))
    return refusal(lambda: emulator.services().update_service(request=request, retry=None))


@pytest.mark.parametrize("case", PATCH_CASES, ids=[c[0] for c in PATCH_CASES])
def test_refused_patch_leaves_the_service_alone(
    emulator: Emulator, base: dict[str, Any], case: tuple[Any, ...]
) -> None:
    _, change, mask, http_status, status, message = case
    body = copy.deepcopy(base)
    change(body)
    answered = send_patch(emulator, body, mask)
    assert answered[:2] == (http_status, status), answered
    assert message in answered[2]
    assert requests.get(f"{emulator.url}/v2/{base['name']}", timeout=5).json() == base


BAD_REQUESTS: list[tuple[Any, ...]] = [
    (
        "PATCH",
        "services/bad-input",
        {},
        "{not json",
        400,
        "INVALID_ARGUMENT",
        "Invalid JSON payload received",
    ),
    (
        "GET",
        "services/bad-input",
        {"color": "red"},
        "",
        400,
        "INVALID_ARGUMENT",
        'Unknown name "color": Cannot bind query parameter',
    ),
    ("PATCH", "services/bad-input", {"allowMissing": "maybe"}, "{}", 400, "INVALID_ARGUMENT", "TYPE_BOOL"),
    ("POST", "services", {"serviceId": "Bad_Name"}, "{}", 400, "INVALID_ARGUMENT", "only lowercase"),
    ("POST", "services", {"serviceId": "x" * 50}, "{}", 400, "INVALID_ARGUMENT", "less than 50"),
    ("POST", "services", {}, "{}", 400, "INVALID_ARGUMENT", "service_id is required"),
    (
        "POST",
        "services",
        {"serviceId": "bad-input"},
        "{}",
        409,
        "ALREADY_EXISTS",
        "Resource 'bad-input' already exists.",
    ),
    ("POST", "services", {"serviceId": "no-template"}, "{}", 400, "INVALID_ARGUMENT", "service.template"),
    (
        "POST",
        "services",
        {"serviceId": "not-an-object"},
        "[1]",
        400,
        "INVALID_ARGUMENT",
        "Expected an object",
    ),
    (
        "GET",
        "services/nope",
        {},
        "",
        404,
        "NOT_FOUND",
        "Resource 'nope' of kind 'SERVICE' in region 'europe-west1' in project 'local' does not exist.",
    ),
    (
        "GET",
        "services/bad-input/revisions/bad-input-nope",
        {},
        "",
        404,
        "NOT_FOUND",
        "Resource 'bad-input-nope' of kind 'REVISION'",
    ),
    ("GET", "services/nope/revisions", {}, "", 404, "NOT_FOUND", "of kind 'SERVICE'"),
    ("GET", "operations/nope", {}, "", 404, "NOT_FOUND", "Operation"),
    ("GET", "services", {"pageToken": "zz"}, "", 400, "INVALID_ARGUMENT", "Invalid page token"),
    ("GET", "servicez", {}, "", 404, "NOT_FOUND", "was not found on this server"),
]
BAD_REQUEST_IDS = [
    "malformed-json",
    "unknown-query",
    "bad-bool",
    "bad-id",
    "long-id",
    "no-id",
    "exists",
    "no-template",
    "array-body",
    "missing-service",
    "missing-revision",
    "revisions-of-missing",
    "missing-operation",
    "bad-page-token",
    "unknown-path",
]
# The same mistakes made through the client over gRPC (the rest exist in REST's wire format only).
GRPC_CALLS: dict[str, Callable[[Emulator], Any]] = {
    "bad-id": lambda e: e.services().create_service(
        parent=PARENT, service_id="Bad_Name", service=run_v2.Service()
    ),
    "long-id": lambda e: e.services().create_service(
        parent=PARENT, service_id="x" * 50, service=run_v2.Service()
    ),
    "no-id": lambda e: e.services().create_service(parent=PARENT, service_id="", service=run_v2.Service()),
    "exists": lambda e: e.services().create_service(
        parent=PARENT, service_id="bad-input", service=run_v2.Service()
    ),
    "no-template": lambda e: e.services().create_service(
        parent=PARENT, service_id="no-template", service=run_v2.Service()
    ),
    "missing-service": lambda e: e.services().get_service(name=f"{PARENT}/services/nope", retry=None),
    "missing-revision": lambda e: e.revisions().get_revision(
        name=f"{PARENT}/services/bad-input/revisions/bad-input-nope", retry=None
    ),
    "revisions-of-missing": lambda e: e.revisions().list_revisions(
        parent=f"{PARENT}/services/nope", retry=None
    ),
    "missing-operation": lambda e: e.services().get_operation({"name": f"{PARENT}/operations/nope"}),
    "bad-page-token": lambda e: e.services().list_services(
        request={"parent": PARENT, "page_token": "zz"}, retry=None
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=BAD_REQUEST_IDS)
def test_bad_requests(emulator: Emulator, base: dict[str, Any], case: tuple[Any, ...]) -> None:
    method, path, params, data, http_status, status, message = case
    if emulator.transport == "rest":
        url = f"{emulator.url}/v2/{PARENT}/{path}"
        answer = requests.request(method, url, params=params, data=data, timeout=5)
        error = error_of(answer)
        answered = (answer.status_code, error["status"], error["message"])
    else:
        call = GRPC_CALLS.get(BAD_REQUEST_IDS[BAD_REQUESTS.index(case)])
        if call is None:
            pytest.skip("REST wire format only (JSON body, query string, URL path)")
        answered = refusal(lambda: call(emulator))
    assert answered[:2] == (http_status, status), answered
    assert message in answered[2]
    assert requests.get(f"{emulator.url}/v2/{base['name']}", timeout=5).json()["etag"] == base["etag"]


def test_reused_revision_name_needs_the_same_template(emulator: Emulator, images: Images) -> None:
    client = emulator.services()
    service = create_service(client, "bad-reuse", images.marker)
    service.template = template(images.marker, revision="bad-reuse-named", greeting="a")
    named = patch(client, service, "template").result(timeout=60)
    named.template = template(images.marker, revision="bad-reuse-named", greeting="b")
    with pytest.raises(exceptions.Conflict, match="with different configuration already exists"):
        patch(client, named, "template")
    # A traffic-only change creates no revision.
    named.template = template(images.marker, revision="bad-reuse-named", greeting="a")
    named.traffic = [pinned("bad-reuse-named")]
    moved = patch(client, named, "traffic").result(timeout=60)
    assert moved.latest_created_revision == named.latest_created_revision
    assert len(list(emulator.revisions().list_revisions(parent=moved.name))) == 2


def test_stale_etag_through_the_client(emulator: Emulator, images: Images) -> None:
    client = emulator.services()
    service = create_service(client, "bad-etag", images.marker)
    service.description = "first writer"
    patch(client, service, "description").result(timeout=30)
    service.description = "second writer, stale read"
    with pytest.raises(exceptions.Conflict, match="etag"):
        patch(client, service, "description")
    assert client.get_service(name=service.name).description == "first writer"


GARBAGE = [
    b"null",
    b'"a string"',
    b"123",
    b"\xff\xfe",
    b'{"template": null}',
    b'{"template": []}',
    b'{"traffic": {}}',
    b'{"traffic": [null]}',
    b'{"traffic": [{"percent": "x"}]}',
    b'{"traffic": [{"percent": 1e20}]}',
    b'{"traffic": [{"type": 7, "percent": 100}]}',
    b'{"labels": {"a": 1}}',
    b'{"template": {"containers": [{"image": 5}]}}',
    b'{"template": {"containers": [{"env": [{"name": "A"}]}]}}',
    b'{"generation": "many"}',
    b'{"template": {"timeout": "forever"}}',
    b"[" * 2000 + b"]" * 2000,
]


@pytest.mark.parametrize("mask", ["", "template,traffic", "traffic.percent", "template.bogus", "labels.a.b"])
def test_garbage_never_breaks_the_server_or_the_service(
    emulator: Emulator, base: dict[str, Any], mask: str, rest_only: None
) -> None:
    url = f"{emulator.url}/v2/{base['name']}"
    for body in GARBAGE:
        create = f"{emulator.url}/v2/{PARENT}/services"
        for method, target, params in (
            ("PATCH", url, {"updateMask": mask} if mask else {}),
            ("POST", create, {"serviceId": "junk"}),
        ):
            answer = requests.request(method, target, params=params, data=body, timeout=5)
            assert 400 <= answer.status_code < 500, (body[:60], answer.text)
            assert error_of(answer)["status"] in ("INVALID_ARGUMENT", "NOT_FOUND"), answer.text
    after = requests.get(url, timeout=5).json()
    assert (after["etag"], after["traffic"]) == (base["etag"], base["traffic"])
    assert requests.get(f"{emulator.url}/v2/{PARENT}/services/junk", timeout=5).status_code == 404


def test_racing_writers_with_one_etag_have_one_winner(emulator: Emulator, images: Images) -> None:
    client = emulator.services()
    service = create_service(client, "bad-race", images.marker)

    def write(n: int) -> str:
        mine = run_v2.Service(name=service.name, etag=service.etag, description=f"writer {n}")
        try:
            patch(client, mine, "description").result(timeout=30)
        except exceptions.Conflict:
            return "conflict"
        return "won"

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(write, range(6)))
    assert sorted(outcomes) == ["conflict"] * 5 + ["won"]
    winner = client.get_service(name=service.name)
    assert winner.description == f"writer {outcomes.index('won')}"
    assert winner.generation == service.generation + 1
