from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from faye_plugin.catalogue import load_catalogue, parse_catalogue
from faye_plugin.exceptions import CatalogueError

DOC = {
    "test_servers": [{"name": "t1", "docker_url": "unix:///x/t1.sock"}],
    "services": {
        "hello": {
            "cloud_run": {"project": "local", "region": "europe-west1"},
            "image": "127.0.0.1:5000/hello",
            "build": {"git_url": "/tmp/hello"},
            "slots": ["a", "b"],
            "test": {"command": ["sh", "-c", "true"]},
        }
    },
}


def test_parses_and_defaults() -> None:
    cat = parse_catalogue(DOC)
    svc = cat.service("hello")
    assert svc.cloud_run.service == "hello"
    assert svc.test is not None and svc.test.image == "127.0.0.1:5000/hello"
    assert cat.defaults.slot_policy == "evict-oldest"
    assert [s.name for s in cat.test_servers] == ["t1"]


def test_unknown_service_and_slot_are_named() -> None:
    cat = parse_catalogue(DOC)
    with pytest.raises(CatalogueError, match=r"unknown service 'nope'.*hello"):
        cat.service("nope")
    with pytest.raises(CatalogueError, match=r"unknown slot 'z'.*a, b"):
        cat.service("hello").require_slot("z")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"slots": []}, "at least one slot"),
        ({"slots": ["Bad_Slot"]}, "DNS label"),
        ({"image": None}, "missing required key 'image'"),
        ({"test": {"command": "not a list"}}, "test.command"),
    ],
)
def test_bad_services_are_refused(patch: dict, message: str) -> None:
    doc = {**DOC, "services": {"hello": {**DOC["services"]["hello"], **patch}}}
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(doc)


def test_load_from_file_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.yaml"
    with pytest.raises(CatalogueError, match="no catalogue at"):
        load_catalogue(path)
    path.write_text(yaml.safe_dump(DOC))
    assert load_catalogue(path).service("hello").slots == ("a", "b")


def test_max_lifetime_is_per_service_with_a_catalogue_default() -> None:
    from faye_plugin.naming import DEFAULT_MAX_LIFETIME_HOURS

    assert parse_catalogue(DOC).service("hello").max_lifetime_hours == DEFAULT_MAX_LIFETIME_HOURS
    doc = {**DOC, "defaults": {"max_lifetime_hours": 48}}
    assert parse_catalogue(doc).service("hello").max_lifetime_hours == 48
    own = {**doc, "services": {"hello": {**DOC["services"]["hello"], "max_lifetime_hours": 6}}}
    assert parse_catalogue(own).service("hello").max_lifetime_hours == 6
    with pytest.raises(CatalogueError, match="max_lifetime_hours: expected at least 1 hour"):
        parse_catalogue({**DOC, "defaults": {"max_lifetime_hours": 0}})


def _with_github(block: object) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(DOC))
    doc["services"]["hello"]["github"] = block
    return doc


def test_github_block_is_optional_and_defaults_its_connection() -> None:
    assert parse_catalogue(DOC).service("hello").github is None
    target = parse_catalogue(_with_github({"repo": "local/hello"})).service("hello").github
    assert target is not None and (target.repo, target.conn_id) == ("local/hello", "faye_github")
    other = parse_catalogue(_with_github({"repo": "acme/web.site", "conn_id": "gh_acme"})).service("hello")
    assert other.github is not None and other.github.conn_id == "gh_acme"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("local/hello", r"services\.hello\.github: expected a mapping"),
        ({}, r"services\.hello\.github\.repo: expected owner/name, got None"),
        ({"repo": "hello"}, r"github\.repo: expected owner/name, got 'hello'"),
        ({"repo": "a/b/c"}, r"github\.repo: expected owner/name"),
        ({"repo": "a/b", "conn_id": ""}, r"github\.conn_id: expected an Airflow connection id"),
        ({"repo": "a/b", "conn_id": 5}, r"github\.conn_id: expected an Airflow connection id, got 5"),
        ({"repo": "a/b", "token": "x"}, r"github: unknown key\(s\) token \(known: repo, conn_id\)"),
    ],
)
def test_bad_github_blocks_are_refused(block: object, message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(_with_github(block))


def test_the_local_stacks_catalogue_reports_hello_to_the_double(tmp_path: Path) -> None:
    from faye_plugin.stack import catalogue as stack_catalogue
    from faye_plugin.stack.config import StackConfig

    cfg = StackConfig.from_env({"FAYE_HOME": str(tmp_path)})
    target = parse_catalogue(stack_catalogue.render(cfg)).service("hello").github
    assert target is not None and (target.repo, target.conn_id) == ("local/hello", "faye_github")
