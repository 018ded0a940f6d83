"""RegistryHook against real registries: the stack's, and a token-auth one (see registry_peers.py)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from faye_testing import push_image
from registry_peers import (
    PASSWORD,
    SERVICE,
    USER,
    TokenRegistry,
    free_port,
    push_tiny_image,
    running_token_registry,
)

from faye_plugin.exceptions import InvalidRequestError, RegistryError
from faye_plugin.hooks.registry import MANIFEST_ACCEPT, RegistryHook

pytestmark = pytest.mark.integration


def use_registry(monkeypatch: pytest.MonkeyPatch, url: str, **fields: Any) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_FAYE_REGISTRY", json.dumps({"conn_type": "faye_registry", "host": url, **fields})
    )


def manifest_sha(url: str, name: str, tag: str, headers: dict[str, str] | None = None) -> str:
    """The digest of the manifest bytes, computed here (content addressing), not read from a header."""
    response = requests.get(
        f"{url}/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT, **(headers or {})}, timeout=10
    )
    response.raise_for_status()
    return "sha256:" + hashlib.sha256(response.content).hexdigest()


@pytest.fixture(scope="module")
def built_image(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Build a tiny image on the stack's builder and push it to the stack's registry: (repository, tag)."""
    context: Path = tmp_path_factory.mktemp("image")
    tag = uuid.uuid4().hex
    dockerfile = f"FROM localhost/faye-base:latest\nLABEL faye.test={tag}\n"
    repository = push_image(stack, context, "hooks", tag, dockerfile)
    return repository, tag


def test_digest_of_a_pushed_image(
    stack: Any, built_image: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repository, tag = built_image
    use_registry(monkeypatch, stack["registry_url"])
    hook = RegistryHook()
    digest = hook.get_manifest_digest(repository, tag)
    assert digest == manifest_sha(stack["registry_url"], "faye-test/hooks", tag)
    assert hook.image_exists(repository, tag)
    # by digest too, and without the host (the connection's registry is assumed)
    assert hook.get_manifest_digest(repository, digest) == digest
    assert hook.get_manifest_digest("faye-test/hooks", tag) == digest


def test_missing_tag_or_repository_is_none(
    stack: Any, built_image: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repository, _ = built_image
    use_registry(monkeypatch, stack["registry_url"])
    hook = RegistryHook()
    assert hook.get_manifest_digest(repository, uuid.uuid4().hex) is None
    assert not hook.image_exists(f"{stack['registry_host']}/faye-test/never-pushed", "0" * 40)


def test_bad_names_are_refused_before_any_request(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    use_registry(monkeypatch, stack["registry_url"])
    hook = RegistryHook()
    with pytest.raises(InvalidRequestError, match="repository name 'Faye/Hooks'"):
        hook.get_manifest_digest(f"{stack['registry_host']}/Faye/Hooks", "latest")
    with pytest.raises(InvalidRequestError, match="neither a tag nor a digest"):
        hook.get_manifest_digest(f"{stack['registry_host']}/faye/hooks", "-bad")


def test_other_answers_are_errors_with_status_and_body(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # distribution answers a malformed sha256 digest with 500 {"errors":[{"code":"UNKNOWN",...}]}
    use_registry(monkeypatch, stack["registry_url"])
    with pytest.raises(RegistryError, match=r"HTTP 500: .*UNKNOWN"):
        RegistryHook().get_manifest_digest(f"{stack['registry_host']}/faye-test/hooks", "sha256:abc")


def test_unreachable_registry_is_retried_then_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    use_registry(monkeypatch, url)
    with pytest.raises(RegistryError, match="after 2 attempts"):
        RegistryHook(attempts=2).get_manifest_digest("faye/hooks", "latest")


# --- the Bearer token flow --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    with running_token_registry(tmp_path_factory.mktemp("token-registry")) as registry:
        yield registry


def pushed_with_token(registry: TokenRegistry, name: str, tag: str) -> str:
    token = registry.tokens.issue([f"repository:{name}:pull,push"])
    return push_tiny_image(registry.url, name, tag, {"Authorization": f"Bearer {token}"})


def test_bearer_token_flow(token_registry: TokenRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = pushed_with_token(token_registry, "faye/app", "v1")
    # the registry really wants a token
    assert requests.head(f"{token_registry.url}/v2/faye/app/manifests/v1", timeout=5).status_code == 401
    use_registry(monkeypatch, token_registry.url, login=USER, password=PASSWORD)
    hook = RegistryHook()
    seen = len(token_registry.tokens.requests)
    assert hook.get_manifest_digest(f"{token_registry.host}/faye/app", "v1") == digest
    asked = token_registry.tokens.requests[seen:]
    assert len(asked) == 1
    assert asked[0]["service"] == SERVICE
    assert asked[0]["scope"] == "repository:faye/app:pull"
    assert asked[0]["auth"].startswith("Basic ")
    # the token is cached: a second look and a miss ask the token server nothing
    assert hook.get_manifest_digest(f"{token_registry.host}/faye/app", "v1") == digest
    assert hook.get_manifest_digest(f"{token_registry.host}/faye/app", "v2") is None
    assert len(token_registry.tokens.requests) == seen + 1
    assert hook.test_connection()[0]


def test_wrong_credentials_are_a_clear_error(
    token_registry: TokenRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_registry(monkeypatch, token_registry.url, login=USER, password="wrong")
    with pytest.raises(RegistryError, match=r"token request to .* answered HTTP 401"):
        RegistryHook().get_manifest_digest(f"{token_registry.host}/faye/app", "v1")


def test_busy_token_server_is_retried(token_registry: TokenRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = pushed_with_token(token_registry, "faye/busy", "v1")
    use_registry(monkeypatch, token_registry.url, login=USER, password=PASSWORD)
    token_registry.tokens.fail_next = 1
    seen = len(token_registry.tokens.requests)
    assert RegistryHook().get_manifest_digest(f"{token_registry.host}/faye/busy", "v1") == digest
    assert len(token_registry.tokens.requests) == seen + 2  # one 503, then the token
    assert token_registry.tokens.fail_next == 0
