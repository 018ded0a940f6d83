"""Rendering a preview's configs with secret placeholders (faye_plugin.configs), with no stack."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from faye_plugin.catalogue import parse_catalogue
from faye_plugin.configs import (
    SecretRef,
    parse_secret_ref,
    render_compose,
    render_dotenv,
    render_env,
    secret_refs,
    write_artifacts,
)
from faye_plugin.exceptions import CatalogueError

SHA = "0123456789abcdef0123456789abcdef01234567"


def spec(env: dict[str, str] | None = None, secret_env: dict[str, str] | None = None):
    doc = {
        "services": {
            "hello": {
                "cloud_run": {"project": "p", "region": "r"},
                "image": "127.0.0.1:5000/hello",
                "build": {"git_url": "/src"},
                "slots": ["a"],
                "env": env or {},
                "secret_env": secret_env or {},
            }
        }
    }
    return parse_catalogue(doc).service("hello")


CONTEXT = {
    "service": "hello",
    "pr": 7,
    "sha": SHA,
    "git_sha": SHA,
    "slot": "a",
    "tag": "pr-7",
    "image": "img@sha256:x",
    "slot_url": "http://a.preview.localhost:1",
}


def test_env_renders_templates_and_faye_variables() -> None:
    env = render_env(spec({"GREETING": "hello from PR {{ pr }} in {{ slot }}"}), CONTEXT)
    assert env["GREETING"] == "hello from PR 7 in a"
    assert env["GIT_SHA"] == SHA
    assert env["PREVIEW_URL"] == "http://a.preview.localhost:1"


def test_env_undefined_name_is_an_error_naming_the_variable() -> None:
    with pytest.raises(CatalogueError, match="GREETING"):
        render_env(spec({"GREETING": "{{ nope }}"}), CONTEXT)


def test_secret_refs_parse_and_reject() -> None:
    assert parse_secret_ref("X", "conn:db:password") == SecretRef("conn", "db", "password")
    assert parse_secret_ref("X", "var:token") == SecretRef("var", "token")
    for bad in ("db:password", "conn:db", "var:", "plain-value"):
        with pytest.raises(CatalogueError, match=r"secret_env\.X"):
            parse_secret_ref("X", bad)
    with pytest.raises(CatalogueError, match="both env and secret_env"):
        secret_refs(spec({"X": "1"}, {"X": "var:x"}))


def test_artifacts_carry_references_never_values(tmp_path: Path) -> None:
    s = spec({"GREETING": 'hi $USER "quoted"'}, {"DATABASE_PASSWORD": "conn:faye_hello_db:password"})
    refs = secret_refs(s)
    env = render_env(s, CONTEXT)
    dotenv = render_dotenv(env, refs)
    assert 'GREETING="hi \\$USER \\"quoted\\""' in dotenv
    assert "# DATABASE_PASSWORD: secret, from conn:faye_hello_db:password" in dotenv
    assert "DATABASE_PASSWORD=" not in dotenv
    compose = yaml.safe_load(render_compose(s, image="img@sha256:x", slot="a", tag="pr-7", refs=refs))
    service = compose["services"]["hello"]
    assert service["image"] == "img@sha256:x"
    assert service["environment"]["DATABASE_PASSWORD"].startswith("${DATABASE_PASSWORD:?")
    assert service["labels"]["dev.faye.slot"] == "a"
    paths = write_artifacts(tmp_path / "run", {".env": dotenv})
    assert Path(paths[".env"]).read_text() == dotenv
    assert stat.S_IMODE(os.stat(paths[".env"]).st_mode) == 0o600
