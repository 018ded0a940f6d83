"""The emulator's fast conversions give exactly what protobuf's json_format gives, errors included, and
its state file keeps finished operations (written once each) across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import json_format

from faye_plugin.emulator import codec
from faye_plugin.emulator.resources import SERVICE_TYPE, operation
from faye_plugin.emulator.store import MAX_OPERATIONS, OPERATIONS_FILE, Store
from faye_plugin.emulator.validation import SERVICE_MSG, to_message_dict
from faye_plugin.exceptions import CloudRunApiError

REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


def slow(body: dict[str, Any]) -> dict[str, Any]:
    message = SERVICE_MSG()
    json_format.ParseDict(body, message, ignore_unknown_fields=False)
    return json_format.MessageToDict(message)


def service(tags: int) -> dict[str, Any]:
    traffic: list[dict[str, Any]] = [{"type": REVISION, "revision": "s-1", "percent": 100}]
    traffic += [{"type": 2, "revision": "s-1", "tag": f"pr-{n}", "percent": 0} for n in range(tags)]
    return {
        "name": "projects/p/locations/l/services/s",
        "annotations": {"a": "b"},
        "generation": 3,
        "reconciling": False,
        "template": {"containers": [{"image": "x"}]},
        "traffic": traffic,
        "trafficStatuses": [dict(t, uri=f"http://t{n}") for n, t in enumerate(traffic)],
    }


def test_normalise_is_json_format_and_a_seen_list_too() -> None:
    body = service(50)
    expected = slow(body)
    first = codec.normalise(body, SERVICE_MSG)
    assert first == expected and list(first) == list(expected)  # same fields, same order
    assert codec.normalise(body, SERVICE_MSG) == expected  # the same lists again: remembered
    assert codec.normalise(first, SERVICE_MSG) == expected  # an answer fed back: already normal
    body["traffic"] = body["traffic"][:-1]  # a new list (the engine never edits one in place)
    assert codec.normalise(body, SERVICE_MSG) == slow(body)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"tag": True}, "Failed to parse tag field"),
        ({"percent": True}, "Failed to parse percent field"),
        ({"percent": "x"}, "Failed to parse percent field"),
        ({"nope": 1}, "Unknown name \"nope\" at 'service.traffic[1]'"),
        ({"type": "NOT_A_TYPE"}, "Failed to parse type field"),
    ],
)
def test_a_bad_item_is_refused_as_the_whole_message_refuses_it(bad: dict[str, Any], message: str) -> None:
    good = {"type": REVISION, "revision": "s-1", "percent": 1, "tag": "pr-1"}
    codec.normalise({"traffic": [good]}, SERVICE_MSG)  # remembered first: a 1 must not stand for True
    body = {"traffic": [{"type": REVISION, "revision": "s-1", "percent": 99}, {**good, **bad}]}
    with pytest.raises(CloudRunApiError) as fast:
        to_message_dict(body, SERVICE_MSG, "service")
    with pytest.raises(json_format.ParseError):
        slow(body)
    assert message in fast.value.message


def test_answers_encode_to_the_same_protos() -> None:
    wire = codec.normalise(service(30), SERVICE_MSG)
    expected = SERVICE_MSG()
    json_format.ParseDict(wire, expected)
    for _ in range(2):  # the second time from what was remembered
        assert SERVICE_MSG.FromString(codec.service_bytes(wire)) == expected
    op = operation("projects/p/locations/l/operations/1", wire, SERVICE_TYPE, done=True)
    decoded = operations_pb2.Operation.FromString(codec.encode(op, operations_pb2.Operation))
    assert decoded == json_format.ParseDict(op, operations_pb2.Operation())
    listing = run_v2.ListServicesResponse.pb()
    assert listing.FromString(codec.encode({"services": [wire]}, listing)).services[0] == expected
    assert codec.from_proto(expected) == json_format.MessageToDict(expected)


def test_finished_operations_are_written_once_and_survive_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path)
    wire = codec.normalise(service(5), SERVICE_MSG)
    names = [f"projects/p/locations/l/operations/{n}" for n in range(MAX_OPERATIONS * 2 + 10)]
    for name in names:
        store.operations[name] = operation(name, wire, SERVICE_TYPE, done=True)
        store.save()
    pending = operation("projects/p/locations/l/operations/pending", wire, SERVICE_TYPE, done=False)
    store.operations[pending["name"]] = pending
    store.save()
    lines = (tmp_path / OPERATIONS_FILE).read_text().splitlines()
    assert len(lines) <= 2 * MAX_OPERATIONS  # rewritten when it grew past twice what is kept
    again = Store(tmp_path)
    again.load()
    assert list(again.operations) == [*names[-(MAX_OPERATIONS - 1) :], pending["name"]]
    assert again.operations[names[-1]] == store.operations[names[-1]]
    assert again.operations[names[-1]]["response"] is again.operations[names[-1]]["metadata"]
    assert again.operations[pending["name"]]["done"] is False


def test_the_state_and_operations_files_are_private(tmp_path: Path) -> None:
    """Operations carry whole services, env values included: readable by their owner only."""
    store = Store(tmp_path)
    wire = codec.normalise(service(1), SERVICE_MSG)
    store.operations["projects/p/locations/l/operations/1"] = operation(
        "projects/p/locations/l/operations/1", wire, SERVICE_TYPE, done=True
    )
    store.save()
    for name in (OPERATIONS_FILE, store.path.name):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
