"""The emulator's pure rules (no server, no containers): names, tags, traffic, hosts, faults, pages."""

from __future__ import annotations

import pytest

from faye_plugin.emulator.engine import paginate
from faye_plugin.emulator.faults import Fault, FaultTable
from faye_plugin.emulator.resources import Naming, same_etag
from faye_plugin.emulator.validation import (
    LATEST,
    REVISION,
    SERVICE_MSG,
    check_service_id,
    check_tag,
    check_traffic,
    check_update_mask,
    normalise_traffic,
    to_message_dict,
)
from faye_plugin.exceptions import CloudRunApiError

NAMING = Naming(port=8123, project="local", region="europe-west1")


@pytest.mark.parametrize(
    ("tag", "service", "message"),
    [
        ("ab", "hello", "at least three characters"),
        ("PR-1", "hello", "lowercase"),
        ("pr-", "hello", "lowercase"),
        ("1pr", "hello", "lowercase"),
        ("t" * 42, "hello", "cannot exceed 46"),
    ],
)
def test_bad_tags(tag: str, service: str, message: str) -> None:
    with pytest.raises(CloudRunApiError, match=message):
        check_tag(tag, service)


def test_tag_at_the_46_character_limit_is_fine() -> None:
    check_tag("t" * 41, "hello")
    with pytest.raises(CloudRunApiError):
        check_tag("t" * 42, "hello")


@pytest.mark.parametrize("service_id", ["Hello", "-hello", "hello-", "h" * 50, "he_llo", ""])
def test_bad_service_ids(service_id: str) -> None:
    with pytest.raises(CloudRunApiError) as raised:
        check_service_id(service_id)
    assert raised.value.http_status == 400 and raised.value.status == "INVALID_ARGUMENT"


def test_traffic_defaults_and_sums() -> None:
    assert normalise_traffic([]) == [{"type": LATEST, "percent": 100}]
    typed = normalise_traffic([{"revision": "hello-1", "percent": 100}, {"tag": "main", "percent": 0}])
    assert [t["type"] for t in typed] == [REVISION, LATEST]
    check_traffic(
        [
            {"type": REVISION, "revision": "hello-1", "percent": 60},
            {"type": LATEST, "percent": 40, "tag": "next"},
        ],
        "hello",
        {"hello-1"},
    )
    with pytest.raises(CloudRunApiError, match="sum to 100, got 99"):
        check_traffic([{"type": LATEST, "percent": 99}], "hello", set())
    with pytest.raises(CloudRunApiError, match="does not exist"):
        check_traffic([{"type": REVISION, "revision": "hello-2", "percent": 100}], "hello", {"hello-1"})


def test_unknown_fields_are_named_like_google_does() -> None:
    with pytest.raises(CloudRunApiError) as raised:
        to_message_dict({"template": {"containerz": []}}, SERVICE_MSG, "service")
    assert raised.value.message == (
        "Invalid JSON payload received. Unknown name \"containerz\" at 'service.template': Cannot find field."
    )
    body = {"traffic": [{"type": 2, "revision": "x", "percent": 100}]}
    parsed = to_message_dict(body, SERVICE_MSG, "service")
    assert parsed["traffic"][0]["type"] == REVISION  # ints (enum-encoding=int) become names


def test_update_mask_paths() -> None:
    assert check_update_mask("traffic,template.containers,annotations") == [
        "traffic",
        "template.containers",
        "annotations",
    ]
    assert check_update_mask("invoker_iam_disabled") == ["invokerIamDisabled"]
    with pytest.raises(CloudRunApiError, match="cannot be updated"):
        check_update_mask("etag")


@pytest.mark.parametrize(("service", "tag"), [("hello", ""), ("hello", "pr-12"), ("a-b-c", "x-y-z")])
def test_hosts_round_trip(service: str, tag: str) -> None:
    name = f"projects/local/locations/europe-west1/services/{service}"
    uri = NAMING.tag_uri(name, tag) if tag else NAMING.service_uri(name)
    assert NAMING.parse_host(uri.removeprefix("http://")) == ("local", "europe-west1", service, tag)
    bare_host = uri.removeprefix("http://").split(":")[0]
    assert NAMING.parse_host(bare_host) == ("local", "europe-west1", service, tag)
    other = f"projects/p2/locations/us-east1/services/{service}"
    assert NAMING.service_uri(other) == f"http://{service}.us-east1.p2.run.localhost:8123"
    assert NAMING.parse_host(f"{service}.us-east1.p2.run.localhost") == ("p2", "us-east1", service, "")
    assert NAMING.parse_host("127.0.0.1:8123") is None


def test_faults_are_consumed_in_order() -> None:
    table = FaultTable()
    table.load_env('[{"method": "GetService", "status": 503, "count": 2}, {"method": "*", "status": 429}]')
    taken = [table.take("GetService"), table.take("UpdateService"), table.take("GetService")]
    assert [f.status if f else None for f in taken] == [503, 429, 503]
    assert table.take("GetService") is None and table.pending() == []
    with pytest.raises(ValueError, match="FAYE_EMULATOR_FAULTS"):
        table.load_env('{"method": "GetService", "status": 418}')
    with pytest.raises(CloudRunApiError):
        Fault.from_json({"method": "GetService", "delay_seconds": -1})


def test_pages_and_etags() -> None:
    items = [{"n": i} for i in range(5)]
    assert paginate(items, 2, "") == (items[:2], "2")
    assert paginate(items, 2, "4") == (items[4:], "")
    assert paginate(items, 0, "") == (items, "")
    with pytest.raises(CloudRunApiError, match="page token"):
        paginate(items, 2, "x")
    assert same_etag('"abc"', "abc") and same_etag('W/"abc"', '"abc"') and not same_etag('"abd"', '"abc"')
