"""Fault injection: the next N calls of a method fail with 429/500/503 or answer slowly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from emulator_support import Emulator, Images, error_of, patch
from emulator_support import create as create_service
from google.api_core import exceptions

pytestmark = pytest.mark.integration


@pytest.fixture
def faulty(emulator: Emulator) -> Iterator[Emulator]:
    yield emulator
    requests.delete(f"{emulator.url}/_emulator/faults", timeout=5)


def test_injected_statuses_reach_the_client(faulty: Emulator, images: Images) -> None:
    client = faulty.services()
    service = create_service(client, "fault-status", images.marker)
    listed = faulty.faults(
        {"method": "UpdateService", "status": 503, "count": 2},
        {"method": "GetService", "status": 429, "count": 1},
    )
    assert listed.status_code == 200 and len(listed.json()["faults"]) == 2

    service.description = "after two failures"
    for _ in range(2):
        with pytest.raises(exceptions.ServiceUnavailable, match="injected"):
            patch(client, service, "description")
    with pytest.raises(exceptions.TooManyRequests) as raised:
        client.get_service(name=service.name, retry=None)
    assert (raised.value.reason, raised.value.domain) == ("RATE_LIMIT_EXCEEDED", "googleapis.com")
    assert raised.value.metadata == {"service": "run.googleapis.com"}
    assert patch(client, service, "description").result(timeout=30).description == "after two failures"


def test_error_body_and_the_clients_own_retry(faulty: Emulator, images: Images) -> None:
    client = faulty.services()
    service = create_service(client, "fault-retry", images.marker)
    faulty.faults({"method": "GetService", "status": 500, "count": 1})
    if faulty.transport == "rest":
        answer = requests.get(f"{faulty.url}/v2/{service.name}", timeout=5)
        assert error_of(answer) == {
            "code": 500,
            "message": "Internal error encountered (injected fault).",
            "status": "INTERNAL",
        }
    else:
        with pytest.raises(exceptions.InternalServerError) as raised:
            client.get_service(name=service.name, retry=None)
        assert raised.value.message == "Internal error encountered (injected fault)."

    # GetService's default retry covers 503: one injected failure is invisible to the caller.
    faulty.faults({"method": "GetService", "status": 503, "count": 1})
    assert client.get_service(name=service.name).name == service.name
    assert requests.get(f"{faulty.url}/_emulator/faults", timeout=5).json() == {"faults": []}


def test_slow_answers_and_clearing(faulty: Emulator, images: Images) -> None:
    client = faulty.services()
    service = create_service(client, "fault-slow", images.marker)
    faulty.faults({"method": "GetService", "delay_seconds": 3, "count": 1})
    with pytest.raises((exceptions.RetryError, exceptions.DeadlineExceeded, requests.exceptions.Timeout)):
        client.get_service(name=service.name, retry=None, timeout=0.5)

    faulty.faults({"method": "*", "status": 503, "count": 5})
    assert requests.delete(f"{faulty.url}/_emulator/faults", timeout=5).json() == {"faults": []}
    assert client.get_service(name=service.name, retry=None).name == service.name


@pytest.mark.parametrize(
    "rule",
    [
        {"method": "Nope", "status": 503},
        {"method": "GetService", "status": 404},
        {"method": "GetService", "status": 503, "count": 0},
        {"method": "GetService"},
        {"method": "GetService", "status": 503, "colour": "red"},
    ],
    ids=["unknown-method", "unsupported-status", "zero-count", "nothing-to-do", "unknown-field"],
)
def test_bad_fault_rules_are_refused(faulty: Emulator, rule: dict[str, object]) -> None:
    answer = faulty.faults(rule)
    assert answer.status_code == 400 and error_of(answer)["status"] == "INVALID_ARGUMENT"
    assert requests.get(f"{faulty.url}/_emulator/faults", timeout=5).json() == {"faults": []}


def test_calls_are_counted_by_rpc_on_either_transport(faulty: Emulator, images: Images) -> None:
    client = faulty.services()
    service = create_service(client, "call-count", images.marker)
    requests.delete(f"{faulty.url}/_emulator/calls", timeout=5)  # start counting from here
    client.get_service(name=service.name)
    client.get_service(name=service.name)
    service.description = "counted"
    patch(client, service, "description").result(timeout=30)
    faulty.faults({"method": "GetService", "status": 429, "count": 1})
    with pytest.raises(exceptions.TooManyRequests):
        client.get_service(name=service.name, retry=None)
    counted = requests.get(f"{faulty.url}/_emulator/calls", timeout=5).json()["calls"]
    # a faulted call is a call too; the operation's polling (GetOperation/WaitOperation) is counted apart
    assert counted["GetService"] == 3 and counted["UpdateService"] == 1, counted
    assert requests.delete(f"{faulty.url}/_emulator/calls", timeout=5).json()["calls"] == counted
    assert requests.get(f"{faulty.url}/_emulator/calls", timeout=5).json()["calls"] == {}
