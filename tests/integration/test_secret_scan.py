"""After the rest of the suite, no secret the stack holds is anywhere it does not belong (issue 13, item 6).

The secrets are every value of the stack's own secret stores (``secret_scan.collect_secrets``: the
Airflow password, the JWT secret, the api-server's secret key, the fernet key, the connections'
passwords and tokens, Airflow's generated keys, the TLS private keys). The places, each a test, are
those a user or a log collector reads:

* every try's log of every task instance of every faye DAG run the stack holds (REST), the task-log
  folder and the stack's process logs on disk;
* every XCom value of those runs (REST);
* every task instance as the REST API answers it (rendered template fields, notes), every run (conf,
  note), Airflow's audit log;
* the artifacts folder (``[faye] artifacts_dir``);
* the emulator's state file and its GetService / GetRevision answers (official client, REST);
* the output of ``faye previews``, ``doctor``, ``queue``, ``logs`` and ``stack status`` (plain and JSON);
* every file under ``$FAYE_HOME`` (but container storage): one that holds a secret is private (0600).

Two rules say where a secret *does* belong. A ``secret_env`` value is set on its service's revisions:
it is allowed as the value of that variable in the env of a service or revision (emulator state,
GetService, GetRevision), and nowhere else there. ``faye stack status`` prints the stack's Airflow
login, user and password, to the operator's own terminal on purpose (it is how they log in; the same
person can read ``secrets.json``): that one value is allowed in that one command's output.

The module is marked ``after_suite`` (tests/conftest.py runs it after every other test), so in
``make test`` it scans what the end-to-end tests left. Alone, it first deploys PR 591 of ``hello``
(whose ``DATABASE_PASSWORD`` is a secret) if the stack holds no successful ``deploy_revision``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from faye_testing import AirflowAPI, env_from_sh, faye
from secret_scan import MIN_LENGTH, Scan, Secret, collect_secrets, secret_destinations, stack_files

pytestmark = [pytest.mark.integration, pytest.mark.after_suite]

SERVICE, OWN_PR = "hello", 591


def _pages(api: AirflowAPI, path: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item of a paged list (the api-server caps ``limit`` at its maximum page size)."""
    offset = 0
    while True:
        page = api.get(path, limit=100, offset=offset, **params)
        yield from page[key]
        offset += len(page[key])
        if not page[key] or offset >= page["total_entries"]:
            return


@pytest.fixture(scope="module")
def api(stack: dict[str, Any]) -> AirflowAPI:
    return AirflowAPI(stack["airflow_url"], stack["airflow_username"], stack["airflow_password"], timeout=60)


@pytest.fixture(scope="module")
def home(stack: dict[str, Any]) -> Path:
    return Path(stack["state_dir"])


@pytest.fixture(scope="module")
def held(home: Path) -> list[Secret]:
    secrets, too_short = collect_secrets(home)
    assert not too_short, f"secrets too short to scan for (< {MIN_LENGTH} characters): {too_short}"
    return secrets


@pytest.fixture(scope="module")
def destinations(stack: dict[str, Any], home: Path) -> set[tuple[str, str]]:
    return secret_destinations(home, yaml.safe_load(Path(stack["catalogue"]).read_text()))


def _runs(api: AirflowAPI) -> dict[tuple[str, str], dict[str, Any]]:
    dags = [d["dag_id"] for d in _pages(api, "dags", "dags") if d["dag_id"].startswith("faye_")]
    return {(dag, r["dag_run_id"]): r for dag in dags for r in _pages(api, f"dags/{dag}/dagRuns", "dag_runs")}


def _task_instances(api: AirflowAPI, runs: dict[tuple[str, str], Any]) -> list[dict[str, Any]]:
    return [
        ti
        for dag, run_id in runs
        for ti in _pages(api, f"dags/{dag}/dagRuns/{run_id}/taskInstances", "task_instances")
    ]


def _deployed(tis: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        ti
        for ti in tis
        if ti["dag_id"] == "faye_deploy" and ti["task_id"] == "deploy_revision" and ti["state"] == "success"
    ]


@pytest.fixture(scope="module")
def airflow_state(stack: dict[str, Any], api: AirflowAPI) -> dict[str, Any]:
    """Every faye run and task instance the stack holds, with at least one deploy that set a secret."""
    runs = _runs(api)
    tis = _task_instances(api, runs)
    if not _deployed(tis):  # run alone on a fresh stack: make something to scan
        sha = subprocess.run(
            ["git", "-C", stack["sample_repo"], "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        run = api.trigger("faye_deploy", {"service": SERVICE, "pr": OWN_PR, "git_sha": sha})
        done = api.wait_run("faye_deploy", run["dag_run_id"], timeout=900)
        assert done["state"] == "success", api.task_instances("faye_deploy", run["dag_run_id"])
        runs = _runs(api)
        tis = _task_instances(api, runs)
    return {"runs": runs, "tis": tis, "deployed": _deployed(tis)}


def _cloud_run(stack: dict[str, Any]) -> tuple[Any, Any]:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import run_v2

    options = ClientOptions(api_endpoint=stack["cloud_run_url"])
    return (
        run_v2.ServicesClient(transport="rest", credentials=AnonymousCredentials(), client_options=options),
        run_v2.RevisionsClient(transport="rest", credentials=AnonymousCredentials(), client_options=options),
    )


def _as_json(message: Any) -> Any:
    return json.loads(type(message).to_json(message))


def _finish(scan: Scan, what: str) -> None:
    counts = f"{scan.scanned} pieces, {scan.nbytes} characters, {len(scan.secrets)} secrets"
    print(f"\n{what}: {counts}, {len(scan.hits)} hits")
    assert not scan.hits, scan.report()


def test_the_stack_holds_secrets_and_a_deploy_set_one(stack, held, destinations, airflow_state) -> None:
    """What the other tests scan for is there: the stack's secrets, and a revision that got one."""
    sources = {src.split(":")[0] for s in held for src in s.sources}
    assert {"secrets.json", "passwords.json", "env.sh"} <= sources, sources
    assert any(src.endswith("key.pem") for s in held for src in s.sources)
    assert destinations, "no secret_env entry of the catalogue resolves from the stack's connections"
    _, revisions = _cloud_run(stack)
    ti = airflow_state["deployed"][-1]
    api_run = ti["dag_run_id"]
    name, value = next(iter(destinations))
    spec = yaml.safe_load(Path(stack["catalogue"]).read_text())["services"][SERVICE]["cloud_run"]
    parent = f"projects/{spec['project']}/locations/{spec['region']}/services/{spec['service']}"
    deployed = [
        r for r in revisions.list_revisions(parent=parent) if any(e.name == name for e in r.containers[0].env)
    ]
    assert deployed, f"no revision of {parent} has {name} (run {api_run})"
    env = {e.name: e.value for e in deployed[-1].containers[0].env}
    assert env[name] == value  # the secret reached the revision: the scan has a secret to miss
    # and the scanner sees it there when the destination rule is not applied (it can find a real one)
    raw = Scan(held)
    raw.data("the revision, unredacted", _as_json(deployed[-1]))
    assert raw.hits, "the scanner did not find the secret the revision holds"


def test_task_logs_hold_no_secret(api, home, held, airflow_state) -> None:
    scan = Scan(held)
    for ti in airflow_state["tis"]:
        where = f"{ti['dag_id']}/{ti['dag_run_id']}/{ti['task_id']}"
        path = f"dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/logs"
        for attempt in range(1, int(ti.get("try_number") or 0) + 1):
            log = api.get(f"{path}/{attempt}", map_index=ti["map_index"], full_content=True)
            scan.data(f"log of {where}[{ti['map_index']}] try {attempt} (REST)", log)
    base = Path(env_from_sh(home / "env.sh")["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
    scan.tree("task-log folder", base)
    scan.tree("stack process logs", home / "logs")
    assert scan.scanned > len(airflow_state["tis"]) / 2
    _finish(scan, "task logs")


def test_xcom_holds_no_secret(api, held, airflow_state) -> None:
    scan = Scan(held)
    for dag, run_id in airflow_state["runs"]:
        tis = f"dags/{dag}/dagRuns/{run_id}/taskInstances"
        for entry in _pages(api, f"{tis}/~/xcomEntries", "xcom_entries"):
            path = f"{tis}/{entry['task_id']}/xcomEntries/{quote(entry['key'])}"
            value = api.get(path, map_index=entry["map_index"])
            scan.data(f"XCom {dag}/{run_id}/{entry['task_id']}[{entry['map_index']}] {entry['key']}", value)
    assert scan.scanned > 0
    _finish(scan, "XCom")


def test_rendered_fields_runs_and_audit_log_hold_no_secret(api, held, airflow_state) -> None:
    scan = Scan(held)
    rendered = 0
    for ti in airflow_state["tis"]:
        rendered += bool(ti.get("rendered_fields"))
        scan.data(f"task instance {ti['dag_id']}/{ti['dag_run_id']}/{ti['task_id']}[{ti['map_index']}]", ti)
    for (dag, run_id), run in airflow_state["runs"].items():
        scan.data(f"run {dag}/{run_id}", run)
    for event in _pages(api, "eventLogs", "event_logs"):
        scan.data(f"audit log event {event.get('event_log_id')} ({event.get('event')})", event)
    assert rendered > 0, "no task instance had rendered template fields"
    _finish(scan, "rendered fields, runs, audit log")


def test_artifacts_hold_no_secret(home, held, airflow_state) -> None:
    folder = Path(env_from_sh(home / "env.sh").get("AIRFLOW__FAYE__ARTIFACTS_DIR") or home / "artifacts")
    scan = Scan(held)
    scan.tree("artifacts", folder)
    assert any(p.name == ".env" for p in folder.rglob("*")), f"no artifacts under {folder}"
    _finish(scan, "artifacts")


def test_emulator_holds_secrets_only_in_their_service_env(
    stack, home, held, destinations, airflow_state
) -> None:
    scan, unredacted = Scan(held), Scan(held)
    names: set[str] = set()
    for path in sorted((home / "emulator").glob("*.json")):
        state = json.loads(path.read_text())
        names |= set(state.get("services") or {})
        scan.data(f"emulator state {path.name}", state, destinations)
        unredacted.data(f"emulator state {path.name}", state)
    # the state does hold the deployed secret: it passes because each copy is where it belongs
    assert unredacted.hits, "the emulator's state holds no secret_env value: nothing was checked"
    services, revisions = _cloud_run(stack)
    catalogue = yaml.safe_load(Path(stack["catalogue"]).read_text())
    for spec in catalogue["services"].values():
        parent = f"projects/{spec['cloud_run']['project']}/locations/{spec['cloud_run']['region']}"
        names |= {s.name for s in services.list_services(parent=parent)}
    assert names, "the emulator holds no service"
    for name in sorted(n for n in names if "/services/" in n):
        scan.data(f"GetService {name}", _as_json(services.get_service(name=name)), destinations)
        for revision in revisions.list_revisions(parent=name):
            full = revisions.get_revision(name=revision.name)
            scan.data(f"GetRevision {revision.name}", _as_json(full), destinations)
    _finish(scan, "emulator")


def test_cli_output_holds_no_secret(home, held, airflow_state) -> None:
    """Every secret is a hit in every command's output, but the Airflow login in ``faye stack status``."""
    login = json.loads((home / "secrets.json").read_text())["airflow_password"]
    run_id = airflow_state["deployed"][-1]["dag_run_id"]
    commands: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        (("previews",), ()),
        (("previews", "--json"), ()),
        (("doctor",), ()),
        (("doctor", "--json"), ()),
        (("queue",), ()),
        (("queue", "--json"), ()),
        (("logs", run_id, "--dag", "faye_deploy"), ()),
        (("stack", "status"), (login,)),
        (("stack", "status", "--json"), (login,)),
    ]
    scan = Scan(held)
    for args, allowed in commands:
        proc = faye(*args, check=False, timeout=300)
        assert proc.returncode in (0, 1), (args, proc.returncode, proc.stderr[-2000:])
        scan.text(f"`faye {' '.join(args)}` stdout", proc.stdout, allowed)
        scan.text(f"`faye {' '.join(args)}` stderr", proc.stderr, allowed)
    _finish(scan, "CLI output")


def test_stack_files_holding_a_secret_are_private(home, held, airflow_state) -> None:
    """A file of ``$FAYE_HOME`` that holds a secret can be read by its owner only (mode 0600)."""
    scan = Scan(held)
    holders = []
    for path in stack_files(home):
        text = path.read_bytes().decode("utf-8", errors="replace")
        found = scan.found(text)
        scan.scanned += 1
        scan.nbytes += len(text)
        if found:
            mode = path.stat().st_mode & 0o777
            holders.append(f"{path.relative_to(home)} ({oct(mode)})")
            if mode & 0o077:
                scan.hits.append(f"{path.relative_to(home)}: mode {oct(mode)} holds {found[0].name}")
    print("\nfiles holding a secret:", ", ".join(sorted(holders)))
    _finish(scan, "stack files")
