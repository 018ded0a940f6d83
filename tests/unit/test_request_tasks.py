"""The first task of faye_build and faye_test checks the conf again: a trigger that bypasses the REST
gate (``airflow dags trigger`` writes to the database directly) still fails before any work."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from faye_plugin.exceptions import CatalogueError, InvalidRequestError

CATALOGUE = {
    "services": {
        "hello": {
            "cloud_run": {"project": "local", "region": "europe-west1"},
            "image": "127.0.0.1:5000/hello",
            "build": {"git_url": "/tmp/hello"},
            "slots": ["a"],
        }
    },
}


@pytest.fixture(autouse=True)
def catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(CATALOGUE))
    monkeypatch.setenv("AIRFLOW__FAYE__CATALOGUE", str(path))


def _validate(conf: dict) -> dict:
    from faye_plugin.dags.request_tasks import validate

    return validate.function(dag_run=SimpleNamespace(conf=conf))


def test_validate_names_an_unknown_service_and_an_unknown_key() -> None:
    assert _validate({"service": "hello", "pr": 1, "git_sha": "a" * 40})["pr"] == 1
    with pytest.raises(CatalogueError, match="nosuch"):
        _validate({"service": "nosuch", "pr": 1, "git_sha": "a" * 40})
    with pytest.raises(InvalidRequestError, match="colour"):
        _validate({"service": "hello", "pr": 1, "git_sha": "a" * 40, "colour": "red"})
