"""StackConfig: state folder, derived ports, per-port variables and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from faye_plugin.exceptions import StackError
from faye_plugin.stack.config import PORTS, StackConfig


def test_ports_derive_from_the_base_in_the_documented_order(tmp_path: Path) -> None:
    cfg = StackConfig.from_env({"FAYE_HOME": str(tmp_path), "FAYE_PORT_BASE": "30000"})
    assert cfg.home == tmp_path
    assert cfg.ports == {part: 30000 + offset for part, (offset, _) in PORTS.items()}
    assert cfg.ports["registry"] == 30003
    assert cfg.registry_host == "127.0.0.1:30003"
    assert cfg.docker_url("build") == f"unix://{tmp_path}/podman/build.sock"


def test_defaults_are_dot_faye_and_28700(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = StackConfig.from_env({})
    assert cfg.home == tmp_path / ".faye"
    assert cfg.ports["airflow"] == 28700
    assert cfg.test_server_names == ["test-1", "test-2"]
    assert cfg.docker_hosts == ["build", "run", "test-1", "test-2"]
    assert cfg.executor == "local" and cfg.database_url is None


def test_one_port_moves_alone() -> None:
    cfg = StackConfig.from_env({"FAYE_HOME": "/x", "FAYE_PORT_BASE": "30000", "FAYE_PROXY_PORT": "31555"})
    assert cfg.ports["proxy"] == 31555
    assert cfg.ports["proxy_admin"] == 30002
    assert cfg.proxy_public_url == "http://{slot}.preview.localhost:31555"


def test_two_parts_on_one_port_name_both_variables() -> None:
    with pytest.raises(StackError) as err:
        StackConfig.from_env({"FAYE_HOME": "/x", "FAYE_PORT_BASE": "30000", "FAYE_REGISTRY_PORT": "30001"})
    assert "FAYE_REGISTRY_PORT" in str(err.value) and "FAYE_PROXY_PORT" in str(err.value)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"FAYE_PORT_BASE": "abc"}, "FAYE_PORT_BASE"),
        ({"FAYE_PORT_BASE": "80"}, "FAYE_PORT_BASE"),
        ({"FAYE_AIRFLOW_PORT": "70000"}, "FAYE_AIRFLOW_PORT"),
        ({"FAYE_TEST_SERVERS": "0"}, "FAYE_TEST_SERVERS"),
        ({"FAYE_EXECUTOR": "kubernetes"}, "FAYE_EXECUTOR"),
        ({"FAYE_EXECUTOR": "celery"}, "FAYE_DATABASE_URL"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(StackError, match=needle):
        StackConfig.from_env({"FAYE_HOME": "/x", **env})


def test_test_servers_count_sets_the_hosts() -> None:
    cfg = StackConfig.from_env({"FAYE_HOME": "/x", "FAYE_TEST_SERVERS": "3"})
    assert cfg.docker_hosts == ["build", "run", "test-1", "test-2", "test-3"]


def test_dags_folder_is_the_checkouts_and_can_be_moved(tmp_path: Path) -> None:
    cfg = StackConfig.from_env({"FAYE_HOME": "/x"})
    assert cfg.dags_folder == Path(__file__).resolve().parents[2] / "dags"
    moved = StackConfig.from_env({"FAYE_HOME": "/x", "FAYE_DAGS_FOLDER": str(tmp_path)})
    assert moved.dags_folder == tmp_path


def test_docker_hosts_named_in_faye_docker_tcp_listen_on_loopback_ports() -> None:
    cfg = StackConfig.from_env(
        {"FAYE_HOME": "/x", "FAYE_PORT_BASE": "30000", "FAYE_DOCKER_TCP": "build, test-1"}
    )
    assert cfg.docker_url("build") == "tcp://127.0.0.1:30012"
    assert cfg.docker_url("test-1") == "tcp://127.0.0.1:30014"
    assert cfg.docker_url("run") == "unix:///x/podman/run.sock"
    assert cfg.docker_endpoint("test-1") == ("127.0.0.1", 30014)
    assert cfg.docker_endpoint("test-2") == Path("/x/podman/test-2.sock")
    assert cfg.port("docker_build") == 30012 and cfg.port_variable("docker_build") == "FAYE_PORT_BASE"
    with pytest.raises(StackError, match="FAYE_DOCKER_TCP names test-9"):
        StackConfig.from_env({"FAYE_HOME": "/x", "FAYE_DOCKER_TCP": "test-9"})


def test_celery_workers_have_their_own_folders_log_ports_and_queues() -> None:
    env = {"FAYE_HOME": "/x", "FAYE_PORT_BASE": "30000", "FAYE_EXECUTOR": "celery"}
    env |= {
        "FAYE_DATABASE_URL": "postgresql://p@h/db",
        "FAYE_CELERY_WORKERS": "2",
        "FAYE_BUILD_QUEUE": "build",
    }
    cfg = StackConfig.from_env(env)
    assert cfg.worker_names() == ["airflow-celery-worker", "airflow-celery-worker-2"]
    assert cfg.worker_dir(1) != cfg.worker_dir(2)
    assert [cfg.worker_log_port(1), cfg.worker_log_port(2)] == [30005, 30032]
    assert cfg.worker_queues(1) == ["default"] and cfg.worker_queues(2) == ["default", "build"]
    assert StackConfig.from_env({"FAYE_HOME": "/x"}).worker_names() == []
    with pytest.raises(StackError, match="FAYE_EXECUTOR=celery"):
        StackConfig.from_env({"FAYE_HOME": "/x", "FAYE_CELERY_WORKERS": "2"})
