from __future__ import annotations

import time

from faye_plugin.catalogue import parse_catalogue
from faye_plugin.cli.pool import pool_body
from faye_plugin.hooks.test_servers import LABEL_EXPIRES, LABEL_HOLDER, lease_from_labels, lease_labels
from faye_plugin.operators.test_runner import extra_hosts_for, resolve_test_image


def _spec(test_image_value: str) -> object:
    cat = parse_catalogue(
        {
            "services": {
                "hello": {
                    "cloud_run": {"project": "p", "region": "r"},
                    "image": "127.0.0.1:5000/hello",
                    "build": {"git_url": "/src"},
                    "slots": ["a"],
                    "test": {"image": test_image_value, "command": ["true"]},
                }
            }
        }
    )
    return cat.service("hello")


def test_lease_labels_round_trip_and_expiry() -> None:
    labels = lease_labels("faye_test/run-1/test.run_tests/1", 1000.0, 60)
    lease = lease_from_labels("test-1", "cid", labels)
    assert (lease.server, lease.holder, lease.acquired, lease.expires) == (
        "test-1",
        "faye_test/run-1/test.run_tests/1",
        1000.0,
        1060.0,
    )
    assert not lease.expired(1059.9) and lease.expired(1060.0)


def test_a_lease_with_unreadable_labels_counts_as_expired() -> None:
    lease = lease_from_labels("test-1", "cid", {LABEL_HOLDER: "x", LABEL_EXPIRES: "soon"})
    assert lease.expired(1.0)
    assert lease_from_labels("test-1", "cid", None).expired(1.0)


def test_test_image_is_the_service_image_at_the_sha_when_asked() -> None:
    sha = "a" * 40
    assert resolve_test_image(_spec("{{ image }}"), sha) == f"127.0.0.1:5000/hello:{sha}"  # type: ignore[arg-type]
    assert resolve_test_image(_spec("127.0.0.1:5000/hello"), sha) == f"127.0.0.1:5000/hello:{sha}"  # type: ignore[arg-type]
    assert resolve_test_image(_spec("localhost/faye-base:latest"), sha) == "localhost/faye-base:latest"  # type: ignore[arg-type]


def test_only_localhost_preview_names_are_mapped_in_the_container() -> None:
    assert extra_hosts_for("http://a.preview.localhost:28801") == {"a.preview.localhost": "127.0.0.1"}
    assert extra_hosts_for("https://pr-1---hello-xyz.a.run.app/") == {}


def test_the_pool_counts_deferred_tasks() -> None:
    body = pool_body(2)
    assert body == {
        "name": "faye_test_servers",
        "slots": 2,
        "description": body["description"],
        "include_deferred": True,
    }


def test_the_free_server_trigger_serializes_to_its_own_arguments() -> None:
    from faye_plugin.catalogue import DockerHost
    from faye_plugin.triggers.test_servers import TestServerFreeTrigger

    hosts = (DockerHost("test-1", "tcp://10.0.0.1:2376", "/ca.pem", "/cert.pem", "/key.pem"),)
    path, kwargs = TestServerFreeTrigger.for_hosts(hosts, "localhost/faye-base:latest", 2.0).serialize()
    assert path == "faye_plugin.triggers.test_servers.TestServerFreeTrigger"
    assert kwargs["servers"][0]["tls_client_key"] == "/key.pem"
    assert TestServerFreeTrigger(**kwargs).serialize() == (path, kwargs)
    assert [DockerHost(**s) for s in kwargs["servers"]] == list(hosts)
    # it never fires within seconds of the deferral (Airflow 3.3.2's deferral race)
    assert kwargs["not_before"] > time.time() + 4
