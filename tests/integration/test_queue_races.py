"""Issue 6's races on the real local stack, through Airflow's REST API; ``faye doctor`` after each.

- two deploys of one PR with different shas, back to back: the newer sha is live, the older run ends
  failed with the note ``superseded by <newer run>``;
- two PRs racing for the last free slot of a service: exactly one holds it, the other waits (shown
  by ``faye queue`` and the run note) and, once the policy says ``fail``, fails naming the holders;
  Cloud Run tags, slot claims and proxy routes agree afterwards;
- a cleanup running during a deploy leaves the deploy's tag, and ``faye queue`` shows that deploy
  waiting for a test server while both servers are leased.

PRs 601-613 (``hello``) and the catalogue service ``queue-race`` (added here, its own slots) keep these
runs apart from other modules' previews.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from faye_testing import AirflowAPI, faye, wait_for

pytestmark = pytest.mark.integration

DEPLOY = "faye_deploy"
RACE_SERVICE = "queue-race"
RACE_SLOTS = ["rq1", "rq2"]


@pytest.fixture(scope="module", autouse=True)
def queue_steps_wired(airflow_api: AirflowAPI) -> None:
    """These tests need faye_deploy with its queue steps; say so plainly when they are missing."""
    tasks = {t["task_id"] for t in airflow_api.get(f"dags/{DEPLOY}/tasks")["tasks"]}
    missing = {"supersede_older_runs", "still_newest"} - tasks
    assert not missing, f"faye_deploy lacks the queue steps {sorted(missing)} (queue_steps=True)"


def doctor() -> list[str]:
    proc = faye("doctor", "--json", check=False, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert report["consistent"] is (proc.returncode == 0)
    return list(report["problems"])


def queue_rows() -> list[dict[str, Any]]:
    proc = faye("queue", "--json", check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def through_proxy(stack: dict[str, Any], slot: str) -> str:
    return requests.get(stack["proxy_url"], headers={"Host": f"{slot}.preview.localhost"}, timeout=10).text


def routed_slot(api: AirflowAPI, run_id: str) -> str:
    value = api.get(
        f"dags/{DEPLOY}/dagRuns/{run_id}/taskInstances/update_proxy/xcomEntries/return_value",
        deserialize=True,
    )["value"]
    return str(value["slot"])


def states(api: AirflowAPI, run_id: str) -> dict[str, str | None]:
    return {k: v["state"] for k, v in api.task_instances(DEPLOY, run_id).items()}


def assert_consistent() -> None:
    problems = doctor()
    assert problems == [], "faye doctor found disagreements:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------------------ races


def test_a_newer_push_supersedes_the_older_deploy_of_the_same_pr(
    stack: dict[str, Any], airflow_api: AirflowAPI, stack_process_env: dict[str, str], shas: list[str]
) -> None:
    pr = 601
    clear_previews("hello", {pr})  # a preview of this sha from an earlier session would make a no-op
    older = airflow_api.trigger(DEPLOY, {"service": "hello", "pr": pr, "git_sha": shas[1]})
    newer = airflow_api.trigger(DEPLOY, {"service": "hello", "pr": pr, "git_sha": shas[0]})
    new_run = airflow_api.wait_run(DEPLOY, newer["dag_run_id"], timeout=600)
    # Read the older run once the newer one is done: its supersede_older_runs has then watched the
    # older run settle as failed (Airflow may write a superseded run back as success for a moment
    # when every task left was skipped; mark_superseded re-fails it). A person sees the same.
    old_run = airflow_api.wait_run(DEPLOY, older["dag_run_id"], timeout=600)

    assert new_run["state"] == "success"
    assert old_run["state"] == "failed"
    assert (old_run["note"] or "").startswith(f"superseded by {newer['dag_run_id']}")
    old_states = states(airflow_api, older["dag_run_id"])
    assert old_states.get("release_slot") in (None, "skipped", "upstream_failed"), old_states
    assert old_states.get("deploy_revision") in (None, "skipped", "upstream_failed"), old_states

    page = through_proxy(stack, routed_slot(airflow_api, newer["dag_run_id"]))
    assert shas[0] in page and shas[1] not in page
    assert_consistent()


@pytest.fixture
def race_catalogue(stack: dict[str, Any], stack_process_env: dict[str, str]) -> Iterator[Path]:
    """Add the service ``queue-race`` (hello's image and source, its own Cloud Run service and slots).

    The service stays (its previews stay consistent for later doctor runs); the policy is restored.
    """
    path = Path(stack["catalogue"])
    data = yaml.safe_load(path.read_text())
    policy = data.setdefault("defaults", {}).get("slot_policy", "evict-oldest")
    race = json.loads(json.dumps(data["services"]["hello"]))
    race["cloud_run"]["service"] = RACE_SERVICE
    race["slots"] = list(RACE_SLOTS)
    race.pop("github", None)  # no repository of its own: it reports nothing
    data["services"][RACE_SERVICE] = race
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    clear_previews(RACE_SERVICE)
    yield path
    data = yaml.safe_load(path.read_text())
    data["defaults"]["slot_policy"] = policy
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def clear_previews(service: str, prs: set[int] | None = None) -> None:
    """Remove previews (all of ``service``'s, or those of ``prs``) so the next deploy really deploys."""
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook
    from faye_plugin.hooks.proxy import ProxyHook
    from faye_plugin.preview_state import PreviewState
    from faye_plugin.removal import remove_preview

    spec = load_catalogue().service(service)
    cloud_run = CloudRunPreviewHook(gcp_conn_id=spec.cloud_run.gcp_conn_id)
    proxy = ProxyHook(proxy_conn_id=spec.proxy_conn_id)
    target = spec.cloud_run
    current = cloud_run.get_service(project=target.project, region=target.region, service=target.service)
    found = {r.pr for r in PreviewState.read(current)}
    found |= {int(r.pr) for r in proxy.list_slot_routes() if r.service == service}
    for pr in sorted(found if prs is None else found & prs):
        remove_preview(spec, pr, cloud_run=cloud_run, proxy=proxy)


def set_policy(path: Path, policy: str) -> None:
    data = yaml.safe_load(path.read_text())
    data["defaults"]["slot_policy"] = policy
    time.sleep(1.1)  # the catalogue cache is keyed on the file's modification time
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_two_prs_racing_for_the_last_free_slot_end_with_one_holder(
    stack: dict[str, Any], airflow_api: AirflowAPI, race_catalogue: Path, shas: list[str]
) -> None:
    conf = {"service": RACE_SERVICE, "git_sha": shas[0]}
    first = airflow_api.trigger(DEPLOY, {**conf, "pr": 611})
    assert airflow_api.wait_run(DEPLOY, first["dag_run_id"], timeout=600)["state"] == "success"
    assert routed_slot(airflow_api, first["dag_run_id"]) == RACE_SLOTS[0]

    set_policy(race_catalogue, "wait")
    runs = [airflow_api.trigger(DEPLOY, {**conf, "pr": pr}) for pr in (612, 613)]
    ids = [r["dag_run_id"] for r in runs]

    def one_waits_for_a_slot() -> str | None:
        for run_id in ids:
            run = airflow_api.get(f"dags/{DEPLOY}/dagRuns/{run_id}")
            if (run["note"] or "").startswith("waiting for a slot"):
                return str(run_id)
        return None

    loser = wait_for(one_waits_for_a_slot, "one of the racers to wait for a slot", timeout=600)
    winner = ids[1 - ids.index(loser)]
    assert airflow_api.wait_run(DEPLOY, winner, timeout=600)["state"] == "success"
    row = wait_for(
        lambda: next((r for r in queue_rows() if r["run_id"] == loser), None), "the loser in faye queue"
    )
    assert row["waiting_for"].startswith("a slot") and row["service"] == RACE_SERVICE, row
    assert states(airflow_api, loser).get("still_newest") in ("deferred", "running", "scheduled", "queued")

    # The policy now says fail: the waiting run fails at its next look, naming the slots and holders.
    set_policy(race_catalogue, "fail")
    lost = airflow_api.wait_run(DEPLOY, loser, timeout=300)
    assert lost["state"] == "failed"
    note = lost["note"] or ""
    assert (
        note.startswith("failed at still_newest: slot")
        and f"{RACE_SLOTS[1]}: PR" in note
        and "PR 611" in note
    ), note
    assert states(airflow_api, loser)["still_newest"] == "failed"
    assert states(airflow_api, loser).get("release_slot") in (None, "upstream_failed", "skipped")

    winner_pr = 612 if winner == ids[0] else 613
    assert routed_slot(airflow_api, winner) == RACE_SLOTS[1]
    assert f"hello from PR {winner_pr}" in through_proxy(stack, RACE_SLOTS[1])
    assert "hello from PR 611" in through_proxy(stack, RACE_SLOTS[0])
    assert_consistent()


def test_a_cleanup_during_a_deploy_keeps_its_tag_and_the_queue_shows_the_test_server_wait(
    stack: dict[str, Any], airflow_api: AirflowAPI, stack_process_env: dict[str, str], shas: list[str]
) -> None:
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.test_servers import TestServerHook

    clear_previews("hello", {621})  # a preview of this sha from an earlier session would make a no-op
    servers = [TestServerHook(s) for s in load_catalogue().test_servers]
    holder = f"tests/queue-races/{time.time():.0f}"

    def take_all() -> list[tuple[Any, Any]] | None:
        taken = [(hook, lease) for hook in servers if (lease := hook.try_acquire(holder, 300)) is not None]
        if len(taken) == len(servers):
            return taken
        for hook, lease in taken:
            hook.release(lease)
        return None

    leases = wait_for(take_all, "both test servers to be free", timeout=300)
    assert len(leases) == len(servers) >= 1
    try:
        run = airflow_api.trigger(DEPLOY, {"service": "hello", "pr": 621, "git_sha": shas[0], "priority": 50})
        run_id = run["dag_run_id"]
        # faye's cluster policy put the request's priority on every task (it orders the pools' queues)
        weights = {k: v["priority_weight"] for k, v in airflow_api.task_instances(DEPLOY, run_id).items()}
        assert weights and all(w >= 50 * 1000 for w in weights.values()), weights
        wait_for(lambda: states(airflow_api, run_id).get("extend_expiry") == "success", "extend_expiry")
        cleanup = airflow_api.trigger("faye_cleanup", {})
        cleaned = airflow_api.wait_run("faye_cleanup", cleanup["dag_run_id"], timeout=600)
        assert cleaned["state"] == "success"

        def waiting_for_a_test_server() -> dict[str, Any] | None:
            rows = [r for r in queue_rows() if r["run_id"] == run_id]
            return rows[0] if rows and rows[0]["waiting_for"] == "a test server" else None

        row = wait_for(waiting_for_a_test_server, "faye queue to show the test-server wait", timeout=600)
        assert row["pr"] == 621 and row["service"] == "hello" and row["step"].startswith("test.")
        assert row["priority"] == 50
    finally:
        for hook, lease in leases:
            hook.release(lease)
    done = airflow_api.wait_run(DEPLOY, run_id, timeout=600)
    assert done["state"] == "success"
    page = through_proxy(stack, routed_slot(airflow_api, run_id))
    assert re.search(r"hello from PR 621\b", page) and shas[0] in page
    assert_consistent()


@pytest.mark.parametrize("policy", ["evict-oldest", "wait"])
def test_a_burst_of_more_prs_than_free_slots_leaves_every_tag_claimed(
    stack: dict[str, Any], airflow_api: AirflowAPI, race_catalogue: Path, shas: list[str], policy: str
) -> None:
    """Issue 10's burst: four PRs deployed at once onto a service with two free slots.

    Every run ends success, or failed with a note naming the slot and its holder; afterwards no tag
    lacks a slot claim and ``faye doctor`` is clean. Under ``wait`` the two runs left waiting are ended
    by switching the policy to ``fail`` once the winners are done (nobody frees a slot for them).
    """
    set_policy(race_catalogue, policy)
    prs = (631, 632, 633, 634) if policy == "evict-oldest" else (641, 642, 643, 644)
    runs = [
        airflow_api.trigger(DEPLOY, {"service": RACE_SERVICE, "pr": pr, "git_sha": shas[0]}) for pr in prs
    ]
    ids = [r["dag_run_id"] for r in runs]
    if policy == "wait":

        def two_done_two_waiting() -> bool:
            found = [airflow_api.get(f"dags/{DEPLOY}/dagRuns/{run_id}") for run_id in ids]
            done = [r for r in found if r["state"] in ("success", "failed")]
            waiting = [r for r in found if (r["note"] or "").startswith("waiting for a slot")]
            return len(done) == 2 and len(waiting) == 2

        wait_for(two_done_two_waiting, "two runs done and two waiting for a slot", timeout=1200, every=5)
        set_policy(race_catalogue, "fail")
    ended = {run_id: airflow_api.wait_run(DEPLOY, run_id, timeout=1500) for run_id in ids}
    outcomes = {run_id: (run["state"], run["note"] or "") for run_id, run in ended.items()}
    for run_id, (state, note) in outcomes.items():
        assert state in ("success", "failed"), (run_id, state)
        if state == "failed":
            named = re.search(r"slot rq[12]\b|rq[12]: PR 6\d\d", note) and re.search(r"PR 6\d\d", note)
            assert "slot" in note and named, (run_id, note)
    succeeded = [run_id for run_id, (state, _) in outcomes.items() if state == "success"]
    assert len(succeeded) >= 2, outcomes
    if policy == "evict-oldest":
        assert len(succeeded) == len(ids), outcomes  # each waits for a live claim, then evicts a finished one
    assert_consistent()
