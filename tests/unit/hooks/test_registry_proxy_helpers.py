"""Pure helpers of the registry and proxy hooks: names, challenges, upstream dialling, route JSON."""

from __future__ import annotations

import pytest

from faye_plugin.exceptions import InvalidRequestError
from faye_plugin.hooks.proxy import SlotRoute, route_from_json, route_id, route_json, upstream_dial
from faye_plugin.hooks.registry import check_reference, parse_challenge, split_repository

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ("127.0.0.1:28703/hello", ("127.0.0.1:28703", "hello")),
        ("europe-docker.pkg.dev/p/r/hello", ("europe-docker.pkg.dev", "p/r/hello")),
        ("localhost/faye-base", ("localhost", "faye-base")),
        ("team/hello", (None, "team/hello")),
        ("hello", (None, "hello")),
    ],
)
def test_split_repository(repository: str, expected: tuple[str | None, str]) -> None:
    assert split_repository(repository) == expected


def test_check_reference() -> None:
    check_reference("p/r/hello", SHA)
    check_reference("hello", "sha256:" + "a" * 64)
    with pytest.raises(InvalidRequestError, match="repository name"):
        check_reference("Hello", "latest")
    with pytest.raises(InvalidRequestError, match="repository name"):
        check_reference("hello//x", "latest")
    with pytest.raises(InvalidRequestError, match="neither a tag nor a digest"):
        check_reference("hello", "a" * 129)


def test_parse_challenge() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'
    )
    assert parse_challenge(header) == (
        "bearer",
        {
            "realm": "https://auth.example/token",
            "service": "registry.example",
            "scope": "repository:a/b:pull",
        },
    )
    assert parse_challenge('Basic realm="Registry"') == ("basic", {"realm": "Registry"})
    assert parse_challenge("") == ("", {})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://pr-1---hello.run.localhost:28704",
            ("127.0.0.1:28704", "pr-1---hello.run.localhost:28704", False),
        ),
        ("http://localhost:9000/", ("127.0.0.1:9000", "localhost:9000", False)),
        ("http://10.0.0.5", ("10.0.0.5:80", "10.0.0.5", False)),
        (
            "https://pr-1---hello-x-ew.a.run.app",
            ("pr-1---hello-x-ew.a.run.app:443", "pr-1---hello-x-ew.a.run.app", True),
        ),
        ("https://h.example:8443", ("h.example:8443", "h.example:8443", True)),
    ],
)
def test_upstream_dial(url: str, expected: tuple[str, str, bool]) -> None:
    assert upstream_dial(url) == expected


def test_upstream_must_be_http() -> None:
    with pytest.raises(InvalidRequestError):
        upstream_dial("ftp://x")
    with pytest.raises(InvalidRequestError):
        upstream_dial("not a url")


def test_route_json_round_trip() -> None:
    route = SlotRoute(
        "a",
        "a.preview.localhost",
        "https://pr-7---hello-x.a.run.app",
        "hello",
        7,
        SHA,
        "hello-pr-7-0123456",
        "pr-7",
    )
    data = route_json(route)
    assert data["@id"] == route_id("a") == "faye-slot-a"
    assert data["match"] == [{"host": ["a.preview.localhost"]}]
    assert route_from_json(data) == route


def test_route_from_json_ignores_foreign_and_incomplete_routes() -> None:
    assert route_from_json({"@id": "fallback", "handle": []}) is None
    assert route_from_json({"@id": "faye-slot-a", "match": [{"host": ["a.x"]}], "handle": []}) is None
