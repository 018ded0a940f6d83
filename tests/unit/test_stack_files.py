"""What `up` writes: the sample repository, the catalogue, the Airflow settings, the Caddy config."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from faye_plugin.catalogue import load_catalogue
from faye_plugin.stack import airflow, caddy, catalogue, podman, sample
from faye_plugin.stack.config import StackConfig


def _cfg(tmp_path: Path) -> StackConfig:
    return StackConfig.from_env({"FAYE_HOME": str(tmp_path / "state"), "FAYE_PORT_BASE": "31800"})


def test_sample_repo_has_two_commits_a_broken_branch_and_stable_shas(tmp_path: Path) -> None:
    one, two = tmp_path / "one" / "hello", tmp_path / "two" / "hello"
    assert sample.ensure(one) is True
    assert sample.ensure(one) is False  # idempotent
    sample.ensure(two)
    log = subprocess.run(
        ["git", "log", "--format=%H", "main"], cwd=one, capture_output=True, text=True, check=True
    )
    assert len(log.stdout.split()) >= 2
    assert sample.head(one) == sample.head(two)  # same content, dates and author: same sha
    assert sample.head(one, "broken") != sample.head(one)
    dockerfile = (one / "Dockerfile").read_text()
    assert dockerfile.startswith("FROM localhost/faye-base:latest") and "ARG GIT_SHA" in dockerfile


def test_catalogue_loads_with_the_loader_and_edits_are_kept(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    cfg.home.mkdir(parents=True)
    assert catalogue.write(cfg) == "written"
    assert catalogue.write(cfg) == "unchanged"
    cat = load_catalogue(cfg.catalogue_path)
    hello = cat.service("hello")
    assert hello.image == "127.0.0.1:31803/hello"
    assert hello.build.git_url == str(cfg.sample_repo)
    assert [s.name for s in cat.test_servers] == ["test-1", "test-2"]
    cfg.catalogue_path.write_text(cfg.catalogue_path.read_text() + "# mine\n")
    assert catalogue.write(cfg) == "kept"


def test_airflow_settings_share_one_long_jwt_secret_and_the_documented_connections(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    env = airflow.airflow_env(cfg)
    assert env == airflow.airflow_env(cfg)  # secrets are generated once
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 64
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:31800/execution/"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")
    run = json.loads(env["AIRFLOW_CONN_FAYE_CLOUD_RUN"])
    assert run["extra"]["api_endpoint"] == "http://127.0.0.1:31804"
    proxy = json.loads(env["AIRFLOW_CONN_FAYE_PROXY"])
    assert proxy["host"] == "http://127.0.0.1:31802" and proxy["extra"]["server"] == "previews"
    assert json.loads(env["AIRFLOW_CONN_FAYE_REGISTRY"])["host"] == "http://127.0.0.1:31803"
    assert (cfg.home / "secrets.json").stat().st_mode & 0o077 == 0


def test_celery_settings_use_the_database_and_redis(tmp_path: Path) -> None:
    cfg = StackConfig.from_env(
        {
            "FAYE_HOME": str(tmp_path),
            "FAYE_EXECUTOR": "celery",
            "FAYE_DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1:5432/faye",
        }
    )
    env = airflow.airflow_env(cfg)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql://postgres@127.0.0.1:5432/faye"
    assert "airflow-celery-worker" in airflow.component_names(cfg)


def test_password_file_is_pre_seeded_with_the_reported_password(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    password = airflow.seed_password(cfg)
    seeded = json.loads(airflow.passwords_file(cfg).read_text())
    assert seeded == {"faye": password, "faye-viewer": airflow.read_secrets(cfg)["viewer_password"]}
    assert airflow.read_password(cfg) == password


def test_caddy_config_has_the_previews_server_and_a_fallback_route(tmp_path: Path) -> None:
    conf = caddy.initial_config(_cfg(tmp_path))
    server = conf["apps"]["http"]["servers"]["previews"]
    assert conf["admin"]["listen"] == "127.0.0.1:31802"
    assert server["listen"] == ["127.0.0.1:31801"]
    assert server["automatic_https"]["disable"] is True
    assert server["routes"][-1]["@id"] == "fallback"


def test_caddy_starts_with_the_slot_routes_it_autosaved(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    route = {"@id": "faye-slot-a", "match": [{"host": ["a.preview.localhost"]}], "handle": []}
    saved = caddy.initial_config(cfg, [route])
    saved["admin"]["listen"] = "127.0.0.1:1"  # an older port base: not carried over
    caddy.autosave_path(cfg).parent.mkdir(parents=True)
    caddy.autosave_path(cfg).write_text(json.dumps(saved))
    spec = caddy.service_spec(cfg, {})
    conf = json.loads(Path(spec.argv[-1]).read_text())
    assert conf["admin"] == {"listen": "127.0.0.1:31802", "config": {"persist": True}}
    routes = conf["apps"]["http"]["servers"]["previews"]["routes"]
    assert [r["@id"] for r in routes] == ["faye-slot-a", "fallback"]
    assert spec.env["XDG_CONFIG_HOME"] == str(caddy.autosave_path(cfg).parents[1])


def test_caddy_ignores_an_unreadable_autosave(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    caddy.autosave_path(cfg).parent.mkdir(parents=True)
    caddy.autosave_path(cfg).write_text("{not json")
    assert caddy.saved_slot_routes(cfg) == []


def test_podman_hosts_never_share_state(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    envs = [podman.write_config(cfg, host) for host in cfg.docker_hosts]
    texts = [
        Path(e["CONTAINERS_CONF"]).read_text() + Path(e["CONTAINERS_STORAGE_CONF"]).read_text() for e in envs
    ]
    for host, text in zip(cfg.docker_hosts, texts, strict=True):
        assert f"podman/{host}/tmp" in text and f"podman/{host}/graph" in text and 'runtime = "runc"' in text
        assert 'lock_type = "file"' in text  # never the shared /dev/shm/libpod_lock
    assert "127.0.0.1:31803" in Path(envs[0]["CONTAINERS_REGISTRIES_CONF"]).read_text()


def test_celery_workers_share_the_settings_but_not_their_folders_or_hostnames(tmp_path: Path) -> None:
    cfg = StackConfig.from_env(
        {
            "FAYE_HOME": str(tmp_path),
            "FAYE_EXECUTOR": "celery",
            "FAYE_DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1:5432/faye",
            "FAYE_CELERY_WORKERS": "2",
            "FAYE_BUILD_QUEUE": "build",
        }
    )
    one, two = (s for s in airflow.specs(cfg, {}) if "celery" in s.argv)
    shared = airflow.airflow_env(cfg)
    for spec in (one, two):
        assert {k: spec.env[k] for k in shared if k not in airflow.PER_WORKER} == {
            k: v for k, v in shared.items() if k not in airflow.PER_WORKER
        }
    assert one.cwd != two.cwd and one.env["TMPDIR"] != two.env["TMPDIR"]
    assert one.env["AIRFLOW_HOME"] != two.env["AIRFLOW_HOME"]
    # the shared task-log volume, as in docker-compose.yaml's ./logs
    assert one.env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] == two.env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]
    assert one.env["FAYE_WORKER_HOSTNAME"] != two.env["FAYE_WORKER_HOSTNAME"]
    assert one.argv[one.argv.index("--queues") + 1] == "default"
    assert two.argv[two.argv.index("--queues") + 1] == "default,build"
    assert shared["AIRFLOW__FAYE__BUILD_QUEUE"] == "build"


def test_status_json_is_private_even_when_an_older_one_was_not(tmp_path: Path) -> None:
    """status.json holds the Airflow password: a world-readable one from an older faye is made 0600."""
    from faye_plugin.stack.manager import write_status

    path = tmp_path / "status.json"
    path.write_text("{}")
    path.chmod(0o644)
    write_status(path, {"airflow_password": "pw"})
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == {"airflow_password": "pw"}


def test_the_stack_and_the_image_install_the_same_preload(tmp_path: Path) -> None:
    """``faye stack up`` writes airflow_local_settings.py into Airflow's config folder (imported at
    start); its code is the example the Dockerfile copies into the image."""

    def code(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]

    path = airflow.write_local_settings(tmp_path / "airflow")
    assert path == tmp_path / "airflow" / "config" / "airflow_local_settings.py"
    example = Path(__file__).resolve().parents[2] / "examples" / "airflow_local_settings.py"
    assert code(path.read_text()) == code(example.read_text())
    assert code(path.read_text()) == [
        "from faye_plugin.preload import install as _faye_preload",
        "_faye_preload()",
    ]
