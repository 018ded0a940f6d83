"""The local stack on this machine: every part answers, a second `up` changes nothing, `down` is clean."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from faye_plugin.stack import podman
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.processes import session_members

pytestmark = pytest.mark.integration

STATUS_KEYS = {
    "airflow_url", "airflow_username", "airflow_password", "proxy_url", "proxy_admin_url", "registry_url",
    "cloud_run_url", "build_docker_url", "run_docker_url", "test_docker_urls", "sample_repo", "state_dir",
    "health",
}  # fmt: skip


def _sockets(stack: dict[str, Any]) -> list[str]:
    return [stack["build_docker_url"], stack["run_docker_url"], *stack["test_docker_urls"]]


def test_status_has_every_key_and_every_part_is_healthy(stack: dict[str, Any], faye_cli: Any) -> None:
    assert set(stack) >= STATUS_KEYS
    assert len(stack["test_docker_urls"]) == 2
    assert stack["health"] and all(v == "healthy" for v in stack["health"].values()), stack["health"]
    status = json.loads(faye_cli("stack", "status", "--json").stdout)
    assert status["health"] == stack["health"]


def test_registry_answers_the_v2_api(stack: dict[str, Any]) -> None:
    resp = requests.get(f"{stack['registry_url']}/v2/", timeout=5)
    assert resp.status_code == 200


def test_caddy_admin_has_the_previews_server_and_unknown_slots_get_404(stack: dict[str, Any]) -> None:
    config = requests.get(f"{stack['proxy_admin_url']}/config/apps/http/servers/previews", timeout=5).json()
    assert config["routes"][-1]["@id"] == "fallback"
    resp = requests.get(stack["proxy_url"], headers={"Host": "nobody.preview.localhost"}, timeout=5)
    assert resp.status_code == 404


@pytest.mark.parametrize("which", range(4))
def test_each_docker_host_pings_and_runs_the_base_image(stack: dict[str, Any], which: int) -> None:
    url = _sockets(stack)[which]
    assert podman.ping(Path(url.removeprefix("unix://")))
    client = docker.DockerClient(base_url=url, timeout=60)
    try:
        box = client.containers.run(podman.BASE_IMAGE, ["sh", "-c", "echo base-$((6*7))"], detach=True)
        # podman 4.3's compat /wait answers ~20 s late: poll the state instead.
        deadline = time.monotonic() + 60
        while box.status not in ("exited", "stopped") and time.monotonic() < deadline:
            time.sleep(0.1)
            box.reload()
        out = box.logs()
        box.remove(force=True)
    finally:
        client.close()
    assert out.strip() == b"base-42"


def test_the_four_docker_hosts_are_separate(stack: dict[str, Any]) -> None:
    ids = set()
    for url in _sockets(stack):
        client = docker.DockerClient(base_url=url)
        try:
            ids.add(str(client.info().get("DockerRootDir")))
        finally:
            client.close()
    assert len(ids) == 4


def test_airflow_answers_with_the_faye_password_and_has_the_pool(
    stack: dict[str, Any], airflow_api: Any
) -> None:
    bad = requests.post(
        f"{stack['airflow_url']}/auth/token", json={"username": "faye", "password": "wrong"}, timeout=10
    )
    assert bad.status_code == 401
    pool = airflow_api.get("pools/faye_test_servers")
    assert pool["slots"] == len(stack["test_docker_urls"]) == 2


def test_faye_dags_are_loaded_and_unpaused(airflow_api: Any) -> None:
    files = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "dags").glob("faye_*.py"))
    dags = {d["dag_id"]: d for d in airflow_api.get("dags", limit=1000)["dags"]}
    assert set(files) <= set(dags)
    assert not [d for d in files if dags[d]["is_paused"]]
    assert airflow_api.get("importErrors")["total_entries"] == 0


def test_airflow_loaded_the_faye_plugin_from_its_entry_point(airflow_api: Any) -> None:
    plugins = {p["name"]: p for p in airflow_api.get("plugins", limit=100)["plugins"]}
    assert "faye" in plugins, sorted(plugins)
    assert "group='airflow.plugins'" in plugins["faye"]["source"]
    assert set(plugins["faye"]["macros"]) >= {
        "faye_plugin.plugin.preview_tag",
        "faye_plugin.plugin.slot_hostname",
    }
    assert airflow_api.get("plugins/importErrors")["total_entries"] == 0


def test_sample_repo_is_a_git_repo_with_history(stack: dict[str, Any]) -> None:
    import subprocess

    repo = stack["sample_repo"]
    log = subprocess.run(
        ["git", "-C", repo, "log", "--oneline", "main"], capture_output=True, text=True, check=True
    )
    assert len(log.stdout.splitlines()) >= 2


def test_a_second_up_changes_nothing(stack: dict[str, Any], faye_cli: Any) -> None:
    before = json.loads(faye_cli("stack", "status", "--json").stdout)["pids"]
    again = faye_cli("stack", "up", "--json")
    assert json.loads(again.stdout)["pids"] == before
    assert "started" not in again.stderr


@pytest.mark.stack_teardown
@pytest.mark.skipif(os.environ.get("FAYE_KEEP_STACK") == "1", reason="FAYE_KEEP_STACK=1 keeps the stack")
def test_down_leaves_no_process_behind(stack: dict[str, Any], faye_cli: Any) -> None:
    pids = {name: pid for name, pid in stack["pids"].items() if pid}
    assert len(pids) >= 11  # 4 Airflow, registry, Caddy, emulator, 4 podman hosts
    members = {p for pid in pids.values() for p in session_members(pid)}
    assert members >= set(pids.values())
    # A running container lives outside the podman service's session (its conmon has its own).
    client = docker.DockerClient(base_url=stack["test_docker_urls"][0])
    try:
        client.containers.run(podman.BASE_IMAGE, ["sleep", "600"], detach=True)
    finally:
        client.close()
    cfg = StackConfig.from_env({"FAYE_HOME": stack["state_dir"]})
    assert podman.conmon_pids(cfg)
    # A slot route made through the admin API, as a deploy makes one: it must survive down/up.
    admin = stack["proxy_admin_url"]
    route = {
        "@id": "faye-test-restart",
        "match": [{"host": ["zrestart.preview.localhost"]}],
        "handle": [{"handler": "static_response", "body": "kept across a restart"}],
    }
    routes_url = f"{admin}/config/apps/http/servers/previews/routes"
    requests.put(f"{routes_url}/0", json=route, timeout=10).raise_for_status()
    try:
        faye_cli("stack", "down")
        left = {p for pid in pids.values() for p in session_members(pid)}
        assert left == set()
        assert podman.conmon_pids(cfg) == []
        status = json.loads(faye_cli("stack", "status", "--json", check=False).stdout)
        assert status["pids"] == {}
    finally:
        # Other session fixtures still use the stack in their own teardown: bring it back.
        faye_cli("stack", "up", check=False)
    answer = requests.get(stack["proxy_url"], headers={"Host": "zrestart.preview.localhost"}, timeout=10)
    requests.delete(f"{admin}/id/faye-test-restart", timeout=10)
    assert answer.text == "kept across a restart"
