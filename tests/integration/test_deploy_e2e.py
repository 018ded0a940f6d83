"""faye_deploy and faye_cleanup end to end, through Airflow's REST API, on the real local stack.

Every check reads the real peers back: the run's task states and XComs (Airflow), the service and
its revisions (the Cloud Run emulator, through the official client), the routes (Caddy's admin API)
and the preview's answer through the proxy. The module uses PRs 501-503 of the catalogue's ``hello``
so it shares the stack with other modules without touching their previews.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from faye_testing import AirflowAPI, env_from_sh

pytestmark = pytest.mark.integration

SERVICE = "hello"
PR_MAIN, PR_EXPIRING, PR_OTHER = 501, 502, 503


def _sha(stack: dict[str, Any], ref: str = "HEAD") -> str:
    return subprocess.run(
        ["git", "-C", stack["sample_repo"], "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()


def _deploy(api: AirflowAPI, conf: dict[str, Any], timeout: float = 420) -> tuple[dict[str, Any], dict]:
    run = api.trigger("faye_deploy", conf)
    done = api.wait_run("faye_deploy", run["dag_run_id"], timeout=timeout)
    return done, api.task_instances("faye_deploy", run["dag_run_id"])


#: The tasks after should_build outside its groups, but preview_url (which reports the no-op).
AFTER_THE_BRANCH = (
    "join",
    "still_newest",
    "prepare_configs",
    "release_slot",
    "deploy_revision",
    "update_proxy",
)


def _xcom(api: AirflowAPI, run_id: str, task_id: str) -> Any:
    path = f"dags/faye_deploy/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    return api.get(path)["value"]


def _log_text(api: AirflowAPI, dag_id: str, run_id: str, task_id: str) -> str:
    return json.dumps(api.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1"))


def _service(peers: dict[str, Any]) -> Any:
    target = peers["spec"].cloud_run
    return peers["cloud_run"].get_service(
        project=target.project, region=target.region, service=target.service
    )


def _revision_names(peers: dict[str, Any], pr: int = PR_MAIN) -> set[str]:
    """The names of the service's revisions deployed for ``pr`` (other PRs deploy meanwhile)."""
    target = peers["spec"].cloud_run
    revisions = peers["cloud_run"].list_revisions(
        project=target.project, region=target.region, service=target.service
    )
    return {r.name.rsplit("/", 1)[-1] for r in revisions if r.labels.get("faye-pr") == str(pr)}


def _through_proxy(stack: dict[str, Any], slot_url: str) -> requests.Response:
    host = slot_url.split("://", 1)[1].split("/", 1)[0]
    return requests.get(stack["proxy_url"], headers={"Host": host}, timeout=10)


LONG_SERVICE = "a-service-whose-name-is-too-long-for-tags"  # 41 characters


@pytest.fixture(scope="module")
def long_service(stack: dict[str, Any]) -> Iterator[str]:
    """A catalogue service whose name plus ``pr-<N>`` exceeds Cloud Run's 46 characters (module only)."""
    path = Path(stack["catalogue"])
    original = path.read_text()
    data = yaml.safe_load(original)
    data["services"][LONG_SERVICE] = {
        **data["services"][SERVICE],
        "cloud_run": {**data["services"][SERVICE]["cloud_run"], "service": LONG_SERVICE},
        "slots": ["zlong"],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        yield LONG_SERVICE
    finally:
        path.write_text(original)


@pytest.fixture(scope="module")
def first_deploy(
    stack: dict[str, Any], airflow_api: AirflowAPI, peers: dict[str, Any], long_service: str
) -> dict[str, Any]:
    """PR 501 at HEAD; once it is green, the runs that do not depend on PR 501 start in the background."""
    sha = _sha(stack)
    run, tis = _deploy(airflow_api, {"service": SERVICE, "pr": PR_MAIN, "git_sha": sha})
    assert run["state"] == "success", {k: v["state"] for k, v in tis.items()}
    # Started now (the image of HEAD exists) so they overlap with PR 501's later runs; waited for later.
    background = {
        "expiring": airflow_api.trigger(
            "faye_deploy", {"service": SERVICE, "pr": PR_EXPIRING, "git_sha": sha}
        ),
        # (an unknown service or slot never makes a run: the trigger gate refuses it, test_trigger_gate.py)
        # "pr-503" + a 41-character service name breaks Cloud Run's 46-character limit
        "Cloud Run allows at most 46": airflow_api.trigger(
            "faye_deploy", {"service": long_service, "pr": PR_OTHER, "git_sha": sha}
        ),
    }
    return {
        "sha": sha,
        "run": run,
        "tis": tis,
        "outcome": _xcom(airflow_api, run["dag_run_id"], "preview_url"),
        "background": background,
    }


def test_first_deploy_answers_with_its_sha(stack, airflow_api, peers, first_deploy) -> None:
    outcome, sha = first_deploy["outcome"], first_deploy["sha"]
    assert outcome["tag"] == f"pr-{PR_MAIN}" and outcome["sha"] == sha
    answer = _through_proxy(stack, outcome["slot_url"])
    assert answer.status_code == 200 and sha in answer.text
    assert answer.headers["X-Faye-Revision"] == outcome["revision"]
    # the revision is recorded on Cloud Run, with its labels, and the tag's expiry in the annotation
    target = peers["spec"].cloud_run
    revision = peers["cloud_run"].get_revision(
        f"projects/{target.project}/locations/{target.region}/services/{target.service}"
        f"/revisions/{outcome['revision']}"
    )
    assert revision is not None
    assert revision.labels["faye-pr"] == str(PR_MAIN) and revision.labels["faye-sha"] == sha
    from faye_plugin.preview_state import PreviewState

    record = PreviewState.read(_service(peers)).get(PR_MAIN)
    assert record is not None and record.expires > time.time() and record.slot == outcome["slot"]
    assert record.revision == outcome["revision"]


def test_secret_reaches_the_revision_but_no_log_or_xcom(stack, airflow_api, peers, first_deploy) -> None:
    """``secret_env`` DATABASE_PASSWORD (conn:faye_hello_db:password) is set on the revision only."""
    conn = json.loads(env_from_sh(Path(stack["env_sh"]))["AIRFLOW_CONN_FAYE_HELLO_DB"])
    secret = conn["password"]
    assert len(secret) >= 8
    target = peers["spec"].cloud_run
    revision = peers["cloud_run"].get_revision(
        f"projects/{target.project}/locations/{target.region}/services/{target.service}"
        f"/revisions/{first_deploy['outcome']['revision']}"
    )
    env = {e.name: e.value for e in revision.containers[0].env}
    assert env["DATABASE_PASSWORD"] == secret
    run_id = first_deploy["run"]["dag_run_id"]
    for task_id, ti in first_deploy["tis"].items():
        if ti["state"] != "success" or "[" in task_id:
            continue
        assert secret not in _log_text(airflow_api, "faye_deploy", run_id, task_id), task_id
        path = f"dags/faye_deploy/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries"
        for entry in airflow_api.get(path)["xcom_entries"]:
            value = airflow_api.get(f"{path}/{entry['key']}")
            assert secret not in json.dumps(value), (task_id, entry["key"])
    artifacts = Path(stack["state_dir"]) / "artifacts" / "faye_deploy" / run_id
    assert "DATABASE_PASSWORD" in (artifacts / ".env").read_text()
    assert secret not in (artifacts / ".env").read_text() + (artifacts / "docker-compose.yaml").read_text()


def test_same_sha_again_is_a_noop(stack, airflow_api, peers, first_deploy) -> None:
    before = _revision_names(peers)
    run, tis = _deploy(airflow_api, {"service": SERVICE, "pr": PR_MAIN, "git_sha": first_deploy["sha"]})
    assert run["state"] == "success"
    assert tis["build.build_image"]["state"] == "skipped"
    assert tis["build.push_image"]["state"] == "skipped"
    assert tis["deploy_revision"]["state"] == "skipped"
    # should_build skipped everything after it but preview_url in one go (not one level per loop)
    later = {t for t in tis if t.startswith(("build.", "test.")) or t in AFTER_THE_BRANCH}
    assert {t: tis[t]["state"] for t in later} == dict.fromkeys(later, "skipped")
    path = (
        f"dags/faye_deploy/dagRuns/{run['dag_run_id']}/taskInstances/should_build/xcomEntries/skipmixin_key"
    )
    skipped = airflow_api.get(path, deserialize=True)["value"]
    assert sorted(skipped["skipped"]) == sorted(later), skipped
    assert (
        tis["report_outcome"]["state"] == "success"
    )  # a teardown task: it still closes the GitHub deployment
    outcome = _xcom(airflow_api, run["dag_run_id"], "preview_url")
    assert outcome["noop"] is True
    assert outcome["url"] == first_deploy["outcome"]["url"]
    assert outcome["slot_url"] == first_deploy["outcome"]["slot_url"]
    assert outcome["revision"] == first_deploy["outcome"]["revision"]
    assert _revision_names(peers) <= before  # none added (a scheduled cleanup may prune old ones)


def test_new_sha_creates_a_revision_and_the_proxy_follows(stack, airflow_api, peers, first_deploy) -> None:
    """Triggered with a short sha, as people do: the revision's labels and the outcome carry the full one."""
    older = _sha(stack, "HEAD~1")
    assert older != first_deploy["sha"]
    triggered = time.time()
    run, tis = _deploy(airflow_api, {"service": SERVICE, "pr": PR_MAIN, "git_sha": older[:8]})
    assert run["state"] == "success", {k: v["state"] for k, v in tis.items()}
    outcome = _xcom(airflow_api, run["dag_run_id"], "preview_url")
    assert outcome["revision"] != first_deploy["outcome"]["revision"]
    # a revision made by this run (a scheduled cleanup may have freed and reused an old name meanwhile)
    target = peers["spec"].cloud_run
    revision = peers["cloud_run"].get_revision(
        f"projects/{target.project}/locations/{target.region}/services/{target.service}"
        f"/revisions/{outcome['revision']}"
    )
    assert revision is not None and revision.labels["faye-sha"] == older
    assert revision.create_time.timestamp() >= triggered - 1
    assert outcome["slot_url"] == first_deploy["outcome"]["slot_url"]
    answer = _through_proxy(stack, outcome["slot_url"])
    assert older in answer.text and first_deploy["sha"] not in answer.text
    assert answer.headers["X-Faye-Sha"] == older
    assert outcome["sha"] == older


def test_invalid_conf_is_refused_with_400(stack, airflow_api) -> None:
    before = airflow_api.get("dags/faye_deploy/dagRuns", limit=1)["total_entries"]
    for conf, field in [
        ({"service": SERVICE, "pr": 0, "git_sha": "a" * 40}, "pr"),
        ({"service": SERVICE, "pr": 2**31, "git_sha": "a" * 40}, "pr"),
        ({"service": SERVICE, "pr": 1, "git_sha": "not-a-sha"}, "git_sha"),
        ({"service": SERVICE, "pr": 1, "git_sha": "a" * 40, "ttl_hours": 100000}, "ttl_hours"),
    ]:
        resp = airflow_api.session.post(
            f"{airflow_api.url}/api/v2/dags/faye_deploy/dagRuns",
            json={"logical_date": None, "conf": conf},
            timeout=10,
        )
        assert resp.status_code == 400, resp.text
        assert [p["field"] for p in resp.json()["problems"]] == [field]
    assert airflow_api.get("dags/faye_deploy/dagRuns", limit=1)["total_entries"] == before


def test_a_tag_too_long_for_cloud_run_fails_at_once(stack, airflow_api, first_deploy) -> None:
    for message, run in first_deploy["background"].items():
        if message == "expiring":
            continue
        done = airflow_api.wait_run("faye_deploy", run["dag_run_id"], timeout=240)
        assert done["state"] == "failed"
        tis = airflow_api.task_instances("faye_deploy", run["dag_run_id"])
        assert tis["get_cloud_run_config"]["state"] == "failed"
        assert tis["extend_expiry"]["state"] == "upstream_failed"
        assert message in _log_text(airflow_api, "faye_deploy", run["dag_run_id"], "get_cloud_run_config")


def test_cleanup_removes_expired_and_keeps_live_and_pinned(stack, airflow_api, peers, first_deploy) -> None:
    from faye_plugin import preview_state
    from faye_plugin.hooks.cloud_run import tag_revision, tags
    from faye_plugin.naming import pr_of
    from faye_plugin.preview_state import PreviewState
    from faye_plugin.rollback import kept_for_rollback, revision_info

    run_id = first_deploy["background"]["expiring"]["dag_run_id"]
    run = airflow_api.wait_run("faye_deploy", run_id, timeout=420)
    assert run["state"] == "success", airflow_api.task_instances("faye_deploy", run_id)
    expiring = _xcom(airflow_api, run_id, "preview_url")
    target = peers["spec"].cloud_run

    def set_record(tag: str, **changes: Any) -> None:
        from dataclasses import replace

        pr = int(pr_of(tag) or 0)

        def change(state: PreviewState, service: Any) -> preview_state.Planned:
            record = state.get(pr)
            assert record is not None, tag
            return preview_state.Planned(PreviewState({**state.previews, pr: replace(record, **changes)}))

        preview_state.apply(
            peers["cloud_run"],
            project=target.project,
            region=target.region,
            service=target.service,
            transition=change,
        )

    set_record(f"pr-{PR_EXPIRING}", expires=int(time.time()) - 60)
    for attempt in range(2):  # safe twice in a row
        cleanup = airflow_api.trigger("faye_cleanup", {})
        assert airflow_api.wait_run("faye_cleanup", cleanup["dag_run_id"], timeout=240)["state"] == "success"
        service = _service(peers)
        assert f"pr-{PR_EXPIRING}" not in tags(service), f"attempt {attempt}"
        assert PreviewState.read(service).get(PR_EXPIRING) is None
        assert peers["proxy"].get_slot_route(expiring["slot"]) is None
        assert f"pr-{PR_MAIN}" in tags(service)
        assert _through_proxy(stack, first_deploy["outcome"]["slot_url"]).status_code == 200
        # revisions nothing refers to are gone (PR 502's); the serving one stays,
        # and so does the service's latest revision, which Cloud Run never lets anyone delete
        latest = service.latest_created_revision.rsplit("/", 1)[-1]
        assert _revision_names(peers, PR_EXPIRING) <= {latest}
        serving = {t.revision for t in service.traffic if t.revision}  # the tags' and the percents'
        # ... and PR 501's rollback target (its newest ready revision older than the served one)
        kept = kept_for_rollback(
            [
                revision_info(r)
                for r in peers["cloud_run"].list_revisions(
                    project=target.project, region=target.region, service=target.service
                )
            ],
            {PR_MAIN: str(tag_revision(service, f"pr-{PR_MAIN}"))},
        )
        assert tag_revision(service, f"pr-{PR_MAIN}") in _revision_names(peers, PR_MAIN) <= serving | kept

    # pinned: kept past its expiry
    set_record(f"pr-{PR_MAIN}", expires=int(time.time()) - 60, pinned=True)
    cleanup = airflow_api.trigger("faye_cleanup", {})
    assert airflow_api.wait_run("faye_cleanup", cleanup["dag_run_id"], timeout=240)["state"] == "success"
    assert f"pr-{PR_MAIN}" in tags(_service(peers))
    assert _through_proxy(stack, first_deploy["outcome"]["slot_url"]).status_code == 200
    set_record(f"pr-{PR_MAIN}", expires=int(time.time()) + 3600, pinned=False)


def test_operation_trigger_reports_done_and_errors(peers) -> None:
    """The deferrable wait's trigger, run as the triggerer runs it, against the emulator's operations."""
    import asyncio

    from faye_plugin.triggers.cloud_run import CloudRunOperationTrigger

    async def first_event(trigger: CloudRunOperationTrigger) -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    service = _service(peers)
    service.annotations["faye.dev/trigger-test"] = str(time.time())
    operation = peers["cloud_run"].start_update_service(service, update_mask=["annotations"])
    conn_id = peers["spec"].cloud_run.gcp_conn_id
    done = asyncio.run(first_event(CloudRunOperationTrigger(operation, conn_id, poll_interval=0.1)))
    assert done == {"status": "success", "operation": operation, "message": "done after 1 poll(s)"}
    assert CloudRunOperationTrigger(operation, conn_id).serialize()[0] == (
        "faye_plugin.triggers.cloud_run.CloudRunOperationTrigger"
    )
    missing = operation.rsplit("/", 1)[0] + "/no-such-operation"
    failed = asyncio.run(first_event(CloudRunOperationTrigger(missing, conn_id, poll_interval=0.1)))
    assert failed["status"] == "error" and "NotFound" in failed["message"]


def test_requested_slot_evicts_its_holder(stack, airflow_api, peers, first_deploy) -> None:
    """Runs last: PR 503 asks for PR 501's slot; PR 501's route, tag and record go, PR 503 answers there."""
    from faye_plugin.hooks.cloud_run import tags
    from faye_plugin.preview_state import PreviewState

    slot = first_deploy["outcome"]["slot"]
    conf = {"service": SERVICE, "pr": PR_OTHER, "git_sha": first_deploy["sha"], "slot": slot}
    run, tis = _deploy(airflow_api, conf)
    assert run["state"] == "success", {k: v["state"] for k, v in tis.items()}
    released = _xcom(airflow_api, run["dag_run_id"], "release_slot")["released"]
    assert [(r["pr"], r["tag_removed"], r["routes_removed"]) for r in released] == [(PR_MAIN, True, [slot])]
    service = _service(peers)
    assert f"pr-{PR_MAIN}" not in tags(service) and PreviewState.read(service).get(PR_MAIN) is None
    assert PreviewState.read(service).get(PR_OTHER).slot == slot  # type: ignore[union-attr]
    answer = _through_proxy(stack, first_deploy["outcome"]["slot_url"])
    assert answer.status_code == 200 and answer.headers["X-Faye-Pr"] == str(PR_OTHER)
    # the evicted PR is told on GitHub: its deployments inactive, its comment names the slot's new holder
    assert tis["report_outcome"]["state"] == "success"
    github = requests.get(f"{stack['github_url']}/_double/state", timeout=10).json()["local/hello"]
    evicted = [d for d in github["deployments"] if d["environment"] == f"preview/hello/pr-{PR_MAIN}"]
    assert evicted and {d["statuses"][0]["state"] for d in evicted} == {"inactive"}, evicted
    [comment] = [c for c in github["comments"] if c["issue_url"].endswith(f"/issues/{PR_MAIN}")]
    assert "evicted" in comment["body"] and f"went to hello PR {PR_OTHER}" in comment["body"], comment["body"]


CRASH_SERVICE, CRASH_SLOT = "hello-crash", "zcrash"
PR_CRASH, PR_CRASH_OTHER, PR_SLOW = 504, 505, 506


@pytest.fixture(scope="module")
def crashing_service(
    stack: dict[str, Any], stack_process_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """A catalogue service (its own Cloud Run service and slot) whose repository's HEAD builds an image
    that exits at start, and whose HEAD~1 is the sample's good HEAD."""
    repo = tmp_path_factory.mktemp("crash") / "hello-crash"
    git = ["git", "-c", "user.name=faye", "-c", "user.email=faye@localhost", "-C", str(repo)]
    subprocess.run(["git", "clone", "-q", stack["sample_repo"], str(repo)], check=True)
    (repo / "serve.sh").write_text('#!/bin/sh\necho "hello-crash: exiting"\nexit 3\n')
    subprocess.run([*git, "commit", "-qam", "exit at start"], check=True)
    # a branch off the good commit whose server listens only after 20 s (past defer_after's 15 s)
    subprocess.run([*git, "checkout", "-q", "-b", "slow", "HEAD~1"], check=True)
    serve = (repo / "serve.sh").read_text()
    (repo / "serve.sh").write_text(serve.replace("exec httpd", "sleep 20\nexec httpd"))
    subprocess.run([*git, "commit", "-qam", "listen after 20 s"], check=True)
    slow = _sha({"sample_repo": str(repo)}, "slow")
    subprocess.run([*git, "checkout", "-q", "main"], check=True)
    path = Path(stack["catalogue"])
    original = path.read_text()
    data = yaml.safe_load(original)
    hello = data["services"][SERVICE]
    image = f"{stack['registry_host']}/{CRASH_SERVICE}"
    data["services"][CRASH_SERVICE] = {
        **hello,
        "cloud_run": {**hello["cloud_run"], "service": CRASH_SERVICE},
        "image": image,
        "build": {**hello["build"], "git_url": str(repo)},
        "slots": [CRASH_SLOT],
        "test": {**hello["test"], "image": image},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        yield {
            "good": _sha({"sample_repo": str(repo)}, "main~1"),
            "bad": _sha({"sample_repo": str(repo)}, "main"),
            "slow": slow,
        }
    finally:
        # leave no route or service of a service the restored catalogue no longer knows (doctor)
        from faye_plugin.catalogue import load_catalogue
        from faye_plugin.hooks.cloud_run import CloudRunPreviewHook
        from faye_plugin.hooks.proxy import ProxyHook

        spec = load_catalogue().service(CRASH_SERVICE)
        ProxyHook(proxy_conn_id=spec.proxy_conn_id).delete_slot_route(CRASH_SLOT)
        CloudRunPreviewHook(gcp_conn_id=spec.cloud_run.gcp_conn_id).delete_service(
            project=spec.cloud_run.project, region=spec.cloud_run.region, service=CRASH_SERVICE
        )
        path.write_text(original)


def _crash_problems() -> list[str]:
    """What ``faye doctor`` finds wrong with the crash service or its slot (other tests run meanwhile)."""
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.doctor import check

    return [p for p in check(load_catalogue()) if CRASH_SERVICE in p or CRASH_SLOT in p]


def test_a_revision_that_never_becomes_ready_is_undone(stack, airflow_api, crashing_service) -> None:
    """A redeploy whose container exits keeps the last good preview serving; a new PR whose container
    exits leaves neither tag nor slot claim behind. Either way the run fails naming the revision."""
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import (
        CloudRunPreviewHook,
        served_revision,
        tag_revision,
    )
    from faye_plugin.preview_state import PreviewState

    good, bad = crashing_service["good"], crashing_service["bad"]
    run, tis = _deploy(airflow_api, {"service": CRASH_SERVICE, "pr": PR_CRASH, "git_sha": good})
    assert run["state"] == "success", {k: v["state"] for k, v in tis.items()}
    live = _xcom(airflow_api, run["dag_run_id"], "preview_url")

    run, tis = _deploy(airflow_api, {"service": CRASH_SERVICE, "pr": PR_CRASH, "git_sha": bad})
    assert run["state"] == "failed"
    assert tis["deploy_revision"]["state"] == "failed"
    assert tis["update_proxy"]["state"] == "upstream_failed"
    log = _log_text(airflow_api, "faye_deploy", run["dag_run_id"], "deploy_revision")
    assert "Container called exit(3)" in log
    assert f"the preview keeps serving {live['revision']} under tag pr-{PR_CRASH}" in log
    from faye_plugin.cli.deploy import failure_reasons
    from faye_plugin.hooks.airflow_api import AirflowApiClient

    client = AirflowApiClient(stack["airflow_url"], stack["airflow_username"], stack["airflow_password"])
    [reason] = failure_reasons(client, "faye_deploy", run["dag_run_id"])  # what `faye deploy` prints
    assert reason.startswith("deploy_revision failed: ") and "Container called exit(3)" in reason

    target = load_catalogue().service(CRASH_SERVICE).cloud_run
    hook = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id)
    service = hook.get_service(project=target.project, region=target.region, service=target.service)
    tag = f"pr-{PR_CRASH}"
    assert served_revision(service, tag) == live["revision"]
    assert [t.revision for t in service.traffic if t.tag == tag] == [live["revision"]]  # spec, too
    record = PreviewState.read(service).by_tag(tag)
    assert record is not None
    assert (record.sha, record.slot, record.revision) == (good, CRASH_SLOT, live["revision"])
    assert record.expires > time.time()
    answer = _through_proxy(stack, live["slot_url"])
    assert answer.status_code == 200 and good in answer.text
    assert _crash_problems() == []

    # Another PR takes the only slot (evicting PR 504), and its revision exits too.
    run, tis = _deploy(airflow_api, {"service": CRASH_SERVICE, "pr": PR_CRASH_OTHER, "git_sha": bad})
    assert run["state"] == "failed" and tis["deploy_revision"]["state"] == "failed"
    log = _log_text(airflow_api, "faye_deploy", run["dag_run_id"], "deploy_revision")
    assert f"tag pr-{PR_CRASH_OTHER} removed and slot {CRASH_SLOT} left free" in log
    service = hook.get_service(project=target.project, region=target.region, service=target.service)
    assert tag_revision(service, f"pr-{PR_CRASH_OTHER}") is None
    failed = PreviewState.read(service).get(PR_CRASH_OTHER)
    assert failed is not None
    assert failed.slot == "" and failed.expires > time.time()  # it still expires, holding nothing
    assert _through_proxy(stack, live["slot_url"]).status_code == 404
    assert _crash_problems() == []


def test_a_slow_revision_is_waited_for_in_the_triggerer(stack, airflow_api, crashing_service) -> None:
    """A revision that takes 20 s to listen outlasts deploy_revision's 15 s of polling in the worker:
    the task defers, CloudRunOperationTrigger waits in the triggerer, execute_complete reads it back."""
    sha = crashing_service["slow"]
    run = airflow_api.trigger("faye_deploy", {"service": CRASH_SERVICE, "pr": PR_SLOW, "git_sha": sha})
    seen: list[str] = []
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        state = airflow_api.get(f"dags/faye_deploy/dagRuns/{run['dag_run_id']}")["state"]
        ti = airflow_api.task_instances("faye_deploy", run["dag_run_id"]).get("deploy_revision", {})
        if ti.get("state") and (not seen or seen[-1] != ti["state"]):
            seen.append(ti["state"])
        if state in ("success", "failed"):
            break
        time.sleep(0.5)
    assert state == "success", seen
    assert "deferred" in seen, seen
    outcome = _xcom(airflow_api, run["dag_run_id"], "preview_url")
    assert outcome["sha"] == sha and outcome["tag"] == f"pr-{PR_SLOW}"
    answer = _through_proxy(stack, outcome["slot_url"])
    assert answer.status_code == 200 and sha in answer.text
    assert _crash_problems() == []
