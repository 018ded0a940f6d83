"""Every DAG file in dags/ imports with no import errors and no network access."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

DAGS = Path(__file__).resolve().parents[2] / "dags"
FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


class NetworkUsedError(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every connect / DNS lookup fail loudly; record the attempts."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[1:] or args))
        raise NetworkUsedError(f"network access while parsing a DAG file: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_dags_folder_exists_and_loads() -> None:
    from airflow.dag_processing.dagbag import DagBag

    assert DAGS.is_dir()
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert len(bag.dags) >= len(FILES)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_dag_file_imports_without_errors_or_network(path: Path, no_network: list[str]) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}, bag.import_errors
    assert no_network == []
    dags = [d for d in bag.dags.values() if Path(d.fileloc) == path]
    assert dags, f"{path.name} defines no DAG"
    for dag in dags:
        assert dag.catchup is False and dag.tags and dag.doc_md, dag.dag_id


def test_a_dag_file_that_touches_the_network_is_caught(tmp_path: Path, no_network: list[str]) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bad = tmp_path / "phones_home.py"
    bad.write_text(
        "import socket\n"
        "from airflow.sdk import DAG\n"
        "socket.create_connection(('127.0.0.1', 9))\n"
        "dag = DAG('phones_home', schedule=None)\n"
    )
    bag = DagBag(dag_folder=str(bad))
    assert str(bad) in bag.import_errors
    assert no_network
