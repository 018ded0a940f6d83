"""The secret scanner of tests/integration/test_secret_scan.py finds what is planted, and only that.

The integration module can only fail if the scanner finds a secret where one is: these tests plant
the stack's own secrets (read from a stack folder ``up`` would write) in each form a leak takes.
"""

from __future__ import annotations

import json
from pathlib import Path

from secret_scan import DESTINATION, Scan, collect_secrets, redact_destinations, secret_destinations

from faye_plugin.stack import airflow, catalogue, tls
from faye_plugin.stack.config import StackConfig


def _home(tmp_path: Path) -> tuple[StackConfig, dict[str, str]]:
    """A stack folder with the files ``faye stack up`` writes before any process starts."""
    cfg = StackConfig.from_env({"FAYE_HOME": str(tmp_path / "state"), "FAYE_PORT_BASE": "31900"})
    secrets = airflow.stack_secrets(cfg)
    airflow.seed_password(cfg)
    airflow.write_env_sh(cfg)
    tls.ensure(cfg.home / "emulator" / "tls")
    catalogue.write(cfg)
    return cfg, secrets


def test_every_secret_of_the_stack_files_is_collected(tmp_path: Path) -> None:
    cfg, secrets = _home(tmp_path)
    (cfg.airflow_home / "airflow.cfg").write_text(
        "[api]\nsecret_key = generated-by-airflow-xyz\nport = 8080\n"
    )
    found, too_short = collect_secrets(cfg.home)
    values = {s.value: s for s in found}
    assert too_short == []
    for key, value in secrets.items():  # every value of secrets.json, whatever its keys are
        assert f"secrets.json:{key}" in values[value].sources
    # the connection password and the setting are the same values, kept in env.sh too: one secret each
    assert "env.sh:AIRFLOW_CONN_FAYE_HELLO_DB.password" in values[secrets["hello_db_password"]].sources
    assert "env.sh:AIRFLOW_CONN_FAYE_AIRFLOW_API.password" in values[secrets["airflow_password"]].sources
    assert "passwords.json:faye" in values[secrets["airflow_password"]].sources
    assert "env.sh:AIRFLOW__CORE__FERNET_KEY" in values[secrets["fernet_key"]].sources
    assert "airflow.cfg:[api] secret_key" in values["generated-by-airflow-xyz"].sources
    keys = sorted(src for s in found for src in s.sources if src.endswith("key.pem"))
    assert keys == ["emulator/tls/ca-key.pem", "emulator/tls/server-key.pem"]
    # not secrets: a path setting, a URL without a password, a port
    assert not any("PASSWORDS_FILE" in src or "port" in src for s in found for src in s.sources)


def test_registry_credentials_a_token_extra_and_url_passwords_are_collected(tmp_path: Path) -> None:
    home = tmp_path / "state"
    home.mkdir()
    conn = {"conn_type": "faye_registry", "login": "oauth2accesstoken", "password": "ya29.registry-token"}
    proxy = {
        "conn_type": "faye_proxy",
        "extra": json.dumps({"api_token": "caddy-admin-token", "server": "x"}),
    }
    (home / "env.sh").write_text(
        f"export AIRFLOW_CONN_FAYE_REGISTRY='{json.dumps(conn)}'\n"
        f"export AIRFLOW_CONN_FAYE_PROXY='{json.dumps(proxy)}'\n"
        "export AIRFLOW_CONN_GIT='https://bot:gh-token-123@github.com'\n"
        "export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN='postgresql://faye:pg-pass-123@db/faye'\n"
        "export AIRFLOW_VAR_WEBHOOK_SECRET='webhook-signing-secret'\n"
    )
    found, _ = collect_secrets(home)
    assert {s.value for s in found} == {
        "ya29.registry-token",
        "caddy-admin-token",
        "gh-token-123",
        "pg-pass-123",
        "webhook-signing-secret",
    }


def test_a_planted_secret_is_found_in_every_form_and_named_not_shown(tmp_path: Path) -> None:
    cfg, secrets = _home(tmp_path)
    found, _ = collect_secrets(cfg.home)
    password = secrets["hello_db_password"]
    scan = Scan(found)
    scan.text("a task log", f"[2026-12-02] INFO - connecting with {password}\n")
    scan.data("an XCom value", {"env": {"GREETING": "hi", "X": [f"pw={password}"]}})
    scan.text("a JSON log line", json.dumps({"event": f'said "{password}"\n'}))
    fernet = secrets["fernet_key"]
    assert fernet.endswith("=")  # base64 padding: quoted in a URL, its raw form is not in the text
    scan.text("a URL query", "http://h/?key=" + fernet.replace("=", "%3D"))
    key = (cfg.home / "emulator" / "tls" / "server-key.pem").read_text()
    scan.text("a JSON dump of a key", json.dumps({"key": key}))
    artifact = tmp_path / "artifacts" / "run"
    artifact.mkdir(parents=True)
    (artifact / ".env").write_text(f"FERNET={secrets['fernet_key']}\n")
    scan.tree("artifacts", tmp_path / "artifacts")
    assert scan.hits == [
        "a task log: holds secrets.json:hello_db_password (+1 more)",
        "an XCom value: holds secrets.json:hello_db_password (+1 more)",
        "a JSON log line: holds secrets.json:hello_db_password (+1 more)",
        "a URL query: holds secrets.json:fernet_key (+1 more)",
        "a JSON dump of a key: holds emulator/tls/server-key.pem",
        "artifacts/run/.env: holds secrets.json:fernet_key (+1 more)",
    ]
    assert not any(s.value in "\n".join(scan.hits) for s in found)
    clean = Scan(found)
    clean.text("the masked log", "connecting with ***\n")
    clean.data(
        "the plain env", {"GREETING": "hello from PR 5", "DATABASE_PASSWORD": "conn:faye_hello_db:password"}
    )
    assert clean.hits == [] and clean.scanned == 2


def test_a_secret_is_allowed_only_as_its_own_env_value(tmp_path: Path) -> None:
    cfg, secrets = _home(tmp_path)
    import yaml

    destinations = secret_destinations(cfg.home, yaml.safe_load(cfg.catalogue_path.read_text()))
    password = secrets["hello_db_password"]
    assert destinations == {("DATABASE_PASSWORD", password)}
    env = [{"name": "GREETING", "value": "hi"}, {"name": "DATABASE_PASSWORD", "value": password}]
    service = {"template": {"containers": [{"env": env}]}, "annotations": {}}
    assert redact_destinations(service, destinations)["template"]["containers"][0]["env"][1] == {
        "name": "DATABASE_PASSWORD",
        "value": DESTINATION,
    }
    found, _ = collect_secrets(cfg.home)
    scan = Scan(found)
    scan.data("the service, secret where it belongs", service, destinations)
    assert scan.hits == []
    scan.data("the service, unredacted", service)
    leaks = [
        {**service, "annotations": {"note": password}},  # the right value, the wrong place
        {"template": {"containers": [{"env": [{"name": "OTHER", "value": password}]}]}},  # wrong name
        {"template": {"containers": [{"args": [{"name": "DATABASE_PASSWORD", "value": password}]}]}},
    ]
    for n, leak in enumerate(leaks):
        scan.data(f"leak {n}", leak, destinations)
    assert [h.split(":")[0] for h in scan.hits] == ["the service, unredacted", "leak 0", "leak 1", "leak 2"]


def test_a_failing_scan_prints_no_value(tmp_path: Path) -> None:
    """pytest shows the Scan (its secrets too) when ``assert not scan.hits`` fails."""
    cfg, secrets = _home(tmp_path)
    scan = Scan(collect_secrets(cfg.home)[0])
    scan.text("a log", secrets["airflow_password"])
    assert scan.hits and not any(v in repr(scan) or v in scan.report() for v in secrets.values())
