"""Issue 13 item 5, self-repair, on the real local stack: ``faye doctor --fix`` (the CLI, as a user runs
it) repairs each inconsistency made here by hand through faye's hooks, and never undoes a deploy in
flight; ``faye_cleanup`` runs the same repair on its schedule.

- a stray ``pr-N`` tag (no record) put on a serving revision through the Cloud Run hook;
- a preview whose tag is removed by hand (its record, slot claim and route stay behind);
- a route to a tag Cloud Run does not serve; a route pointed at another URL;
- a test-server lease held for a task instance that has finished;
- the race: a deploy paused (its DAG paused) right after its safe point, so its claim is live and its
  tag not yet written, while ``faye doctor --fix`` runs; the deploy then ends success, doctor clean.

PRs 701-709 of ``hello`` keep these previews apart from other modules' previews.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
import requests
from faye_testing import AirflowAPI, faye

pytestmark = pytest.mark.integration

SERVICE = "hello"
DEPLOY = "faye_deploy"
PR_KEPT, PR_TAGLESS, PR_STRAY, PR_RACE, PR_CLEANUP, PR_GHOST = 701, 702, 703, 704, 705, 709


def _sha(stack: dict[str, Any]) -> str:
    return subprocess.run(
        ["git", "-C", stack["sample_repo"], "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _service(peers: dict[str, Any]) -> Any:
    target = peers["spec"].cloud_run
    return peers["cloud_run"].get_service(
        project=target.project, region=target.region, service=target.service
    )


def _modify(peers: dict[str, Any], change: Any) -> None:
    """A hand-made change of the service's traffic (no preview-state transition: the inconsistency)."""
    target = peers["spec"].cloud_run
    peers["cloud_run"].modify_service(
        project=target.project,
        region=target.region,
        service=target.service,
        change=lambda current: (change(current), ["traffic"]),
    )


def _doctor(*flags: str) -> tuple[int, dict[str, Any]]:
    proc = faye("doctor", "--json", *flags, check=False, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert report["consistent"] is (proc.returncode == 0)
    return proc.returncode, report


def _deploy(api: AirflowAPI, pr: int, sha: str) -> str:
    run = api.trigger(DEPLOY, {"service": SERVICE, "pr": pr, "git_sha": sha})
    done = api.wait_run(DEPLOY, run["dag_run_id"], timeout=900)
    assert done["state"] == "success", {
        k: v["state"] for k, v in api.task_instances(DEPLOY, run["dag_run_id"]).items()
    }
    return str(run["dag_run_id"])


def _clear(peers: dict[str, Any], prs: set[int] | None = None) -> None:
    """Remove every preview of ``hello`` (or those of ``prs``): the tests start from known state."""
    from faye_plugin.preview_state import PreviewState
    from faye_plugin.removal import remove_preview

    found = {r.pr for r in PreviewState.read(_service(peers))}
    found |= {int(r.pr) for r in peers["proxy"].list_slot_routes() if r.service == SERVICE}
    for pr in sorted(found if prs is None else found & prs):
        remove_preview(peers["spec"], pr, cloud_run=peers["cloud_run"], proxy=peers["proxy"])


def _through_proxy(stack: dict[str, Any], slot: str) -> requests.Response:
    return requests.get(stack["proxy_url"], headers={"Host": f"{slot}.preview.localhost"}, timeout=10)


def test_doctor_fix_repairs_each_inconsistency_made_by_hand(
    stack: dict[str, Any], airflow_api: AirflowAPI, peers: dict[str, Any]
) -> None:
    from faye_plugin.hooks.cloud_run import tag_revision, tag_uri, tags, with_tag_on, without_tag
    from faye_plugin.hooks.proxy import SlotRoute
    from faye_plugin.hooks.test_servers import TestServerHook
    from faye_plugin.preview_state import PreviewState

    _clear(peers)
    sha = _sha(stack)
    kept_run = _deploy(airflow_api, PR_KEPT, sha)
    _deploy(airflow_api, PR_TAGLESS, sha)
    assert _doctor()[0] == 0
    proxy = peers["proxy"]
    service = _service(peers)
    state = PreviewState.read(service)
    kept, tagless = state.get(PR_KEPT), state.get(PR_TAGLESS)
    assert kept is not None and tagless is not None and kept.slot and tagless.slot
    free = next(s for s in peers["spec"].slots if s not in (kept.slot, tagless.slot))

    # 1. a stray tag: pr-703 on PR 701's revision, no record
    _modify(peers, lambda s: with_tag_on(s, f"pr-{PR_STRAY}", tag_revision(s, kept.tag)))
    # 2. a record whose tag is removed by hand (its route stays: a route to nothing too)
    _modify(peers, lambda s: without_tag(s, tagless.tag))
    # 3. a route to a tag Cloud Run does not serve, in the free slot
    ghost = SlotRoute(
        free,
        proxy.slot_hostname(free),
        tag_uri(service, kept.tag) or "",
        SERVICE,
        PR_GHOST,
        sha,
        "x",
        f"pr-{PR_GHOST}",
    )
    proxy.upsert_slot_route(ghost)
    # 4. PR 701's route pointed at another URL
    route = proxy.get_slot_route(kept.slot)
    assert route is not None
    proxy.upsert_slot_route(
        SlotRoute(
            route.slot,
            route.hostname,
            "http://elsewhere.localhost:9",
            SERVICE,
            route.pr,
            route.sha,
            route.revision,
            route.tag,
        )
    )
    # 5. a lease held for a task instance that has finished (PR 701's deploy_revision, try 1)
    finished = airflow_api.task_instances(DEPLOY, kept_run)["deploy_revision"]
    holder = f"{DEPLOY}/{kept_run}/deploy_revision/{finished['try_number']}"
    server = TestServerHook(peers["catalogue"].test_servers[0])
    lease = server.try_acquire(holder, 3600)
    assert lease is not None, "test-1 is held by someone else"

    code, report = _doctor()
    problems = "\n".join(report["problems"])
    assert code == 1
    assert f"Cloud Run tag pr-{PR_STRAY}" in problems and "has no slot claim" in problems
    assert f"claim {tagless.tag} holds slot {tagless.slot} but Cloud Run has no tag" in problems
    assert f"proxy route {free} ({SERVICE} pr-{PR_GHOST}): Cloud Run does not serve tag" in problems
    assert (
        f"proxy route {kept.slot} ({SERVICE} {kept.tag}): routes to http://elsewhere.localhost:9" in problems
    )
    assert f"test server test-1: lease held by {holder}" in problems

    started = time.monotonic()
    proc = faye("doctor", "--fix", check=False, timeout=600)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    print(out, f"(doctor --fix took {took:.1f} s)")
    lines = out.splitlines()

    def line(*words: str) -> int:
        return next(i for i, text in enumerate(lines) if all(w in text for w in words))

    # route first: the lost preview's route goes before its record, the stray tag's last
    assert line("fixed", f"route {tagless.slot} to {tagless.tag}", "remove route") < line(
        "fixed", f"claim {tagless.tag}", "forget lost record"
    )
    assert line("fixed", f"tag pr-{PR_STRAY}", "remove tag") > line(
        "fixed", f"route {kept.slot}", "point route"
    )
    assert line("fixed", f"route {free} to pr-{PR_GHOST}", "remove route") >= 0
    assert line("fixed", "test-1", "release lease") >= 0
    assert "all consistent" in out
    assert _doctor()[0] == 0

    after = _service(peers)
    assert f"pr-{PR_STRAY}" not in tags(after) and kept.tag in tags(after)
    assert sorted(p.pr for p in PreviewState.read(after)) == [PR_KEPT]
    assert proxy.get_slot_route(free) is None and proxy.get_slot_route(tagless.slot) is None
    assert f"hello from PR {PR_KEPT}" in _through_proxy(stack, kept.slot).text
    assert server.current_lease() is None
    # twice in a row: nothing more to repair
    again = faye("doctor", "--fix", check=False, timeout=600)
    assert again.returncode == 0 and "nothing to repair" in again.stdout, again.stdout


def test_a_repair_racing_a_deploy_never_undoes_it(
    stack: dict[str, Any], airflow_api: AirflowAPI, peers: dict[str, Any]
) -> None:
    """The deploy's claim is live and its tag not yet written while ``faye doctor --fix`` runs.

    The window between the safe point (the claim) and ``deploy_revision`` (the tag) is a few scheduler
    hops; the DAG is paused as soon as ``still_newest`` has succeeded, which holds the run there (the
    scheduler schedules no task of a paused DAG's runs), so the race happens every time.
    """
    from faye_plugin.hooks.cloud_run import tags
    from faye_plugin.preview_state import PreviewState

    _clear(peers, {PR_RACE})  # a first deploy: it claims its slot before its tag exists
    sha = _sha(stack)
    run_id = str(
        airflow_api.trigger(DEPLOY, {"service": SERVICE, "pr": PR_RACE, "git_sha": sha})["dag_run_id"]
    )
    paused = False
    try:
        deadline = time.monotonic() + 600
        while True:
            states = {k: v["state"] for k, v in airflow_api.task_instances(DEPLOY, run_id).items()}
            if states.get("still_newest") in ("running", "success"):
                airflow_api.session.patch(
                    f"{airflow_api.url}/api/v2/dags/{DEPLOY}", json={"is_paused": True}, timeout=30
                ).raise_for_status()
                paused = True
                break
            assert time.monotonic() < deadline, f"still_newest never ran: {states}"
            time.sleep(0.3)
        while True:  # the claim written, the tag not
            record = PreviewState.read(_service(peers)).get(PR_RACE)
            if record is not None and record.slot and record.run_id == run_id:
                break
            assert time.monotonic() < deadline, f"no claim of {run_id}: {record}"
            time.sleep(0.5)
        states = {k: v["state"] for k, v in airflow_api.task_instances(DEPLOY, run_id).items()}
        if f"pr-{PR_RACE}" in tags(_service(peers)):
            pytest.fail(
                f"could not make the race: the deploy wrote its tag before the pause held it: {states}"
            )
        assert states.get("deploy_revision") in (None, "none", "scheduled", "queued"), states

        proc = faye("doctor", "--fix", check=False, timeout=600)
        print(proc.stdout)
        assert proc.returncode == 1, "a deploy in flight leaves doctor unclean: " + proc.stdout
        assert (
            f"claim pr-{PR_RACE} of slot {record.slot} without a tag: the deploy of PR {PR_RACE} is in flight"
            in proc.stdout
        )
        still = PreviewState.read(_service(peers)).get(PR_RACE)
        assert still is not None and still.slot == record.slot and still.run_id == run_id
    finally:
        if paused:
            airflow_api.session.patch(
                f"{airflow_api.url}/api/v2/dags/{DEPLOY}", json={"is_paused": False}, timeout=30
            ).raise_for_status()
    done = airflow_api.wait_run(DEPLOY, run_id, timeout=900)
    assert done["state"] == "success"
    assert f"hello from PR {PR_RACE}" in _through_proxy(stack, record.slot).text
    code, report = _doctor()
    assert code == 0, report["problems"]


def test_faye_cleanup_runs_the_same_repair(
    stack: dict[str, Any], airflow_api: AirflowAPI, peers: dict[str, Any]
) -> None:
    from faye_plugin.hooks.cloud_run import tag_revision, tags, with_tag_on

    service = _service(peers)
    if not any(t.startswith("pr-") for t in tags(service)):  # run alone: deploy a preview to tag
        _deploy(airflow_api, PR_KEPT, _sha(stack))
        service = _service(peers)
    revision = next(tag_revision(service, t) for t in sorted(tags(service)) if t.startswith("pr-"))
    _modify(peers, lambda s: with_tag_on(s, f"pr-{PR_CLEANUP}", revision))
    assert any(f"pr-{PR_CLEANUP}" in p for p in _doctor()[1]["problems"])
    run = airflow_api.trigger("faye_cleanup", {})
    done = airflow_api.wait_run("faye_cleanup", run["dag_run_id"], timeout=600)
    assert done["state"] == "success"
    path = f"dags/faye_cleanup/dagRuns/{run['dag_run_id']}/taskInstances/repair_lost/xcomEntries/return_value"
    repaired = airflow_api.get(path, deserialize=True)["value"]
    assert [(r["action"], r["pr"]) for r in repaired] == [("remove tag", PR_CLEANUP)]
    assert f"pr-{PR_CLEANUP}" not in tags(_service(peers))
    assert _doctor()[0] == 0
