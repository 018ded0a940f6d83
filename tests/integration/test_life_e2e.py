"""A pull request's whole life on the real local stack, through Airflow's REST API and the ``faye`` CLI:
tear down on close (twice, and while a deploy of the PR runs), roll back to the previous sha on the
same slot URL, expire then clean up, and the maximum lifetime.

Every check reads the real peers back (Cloud Run through the official client, Caddy's routes, the
preview's answer through the proxy) and ``faye doctor``. PRs 801-804 of the catalogue's ``hello``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import requests
from faye_testing import AirflowAPI, faye, wait_for

pytestmark = pytest.mark.integration

SERVICE = "hello"
PR_CLOSED, PR_RACING, PR_ROLLED, PR_OLD = 801, 802, 803, 804


def _deploy(api: AirflowAPI, pr: int, sha: str) -> dict[str, Any]:
    run = api.trigger("faye_deploy", {"service": SERVICE, "pr": pr, "git_sha": sha})
    done = api.wait_run("faye_deploy", run["dag_run_id"], timeout=600)
    tis = api.task_instances("faye_deploy", run["dag_run_id"])
    assert done["state"] == "success", {k: v["state"] for k, v in tis.items()}
    path = f"dags/faye_deploy/dagRuns/{run['dag_run_id']}/taskInstances/preview_url/xcomEntries/return_value"
    return dict(api.get(path)["value"])


def _run(api: AirflowAPI, dag_id: str, conf: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    run = api.trigger(dag_id, conf)
    return api.wait_run(dag_id, run["dag_run_id"], timeout=timeout)


def _service(peers: dict[str, Any]) -> Any:
    target = peers["spec"].cloud_run
    return peers["cloud_run"].get_service(
        project=target.project, region=target.region, service=target.service
    )


def _left(peers: dict[str, Any], pr: int) -> dict[str, Any]:
    """What is left of PR ``pr``'s preview: routes, tag, record (all empty when it is gone)."""
    from faye_plugin.hooks.cloud_run import tags
    from faye_plugin.preview_state import PreviewState

    service = _service(peers)
    routes = [r.slot for r in peers["proxy"].list_slot_routes() if r.service == SERVICE and int(r.pr) == pr]
    return {
        "routes": routes,
        "tag": service is not None and f"pr-{pr}" in tags(service),
        "record": None if service is None else PreviewState.read(service).get(pr),
    }


GONE = {"routes": [], "tag": False, "record": None}


def _doctor(pr: int) -> list[str]:
    """``faye doctor``'s problems with PR ``pr``'s tag (other modules' previews may be mid-deploy)."""
    proc = faye("doctor", "--json", check=False, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    return [p for p in json.loads(proc.stdout)["problems"] if f"pr-{pr}" in p]


def _through_proxy(stack: dict[str, Any], slot_url: str) -> requests.Response:
    host = slot_url.split("://", 1)[1].split("/", 1)[0]
    return requests.get(stack["proxy_url"], headers={"Host": host}, timeout=10)


def _cleanup(api: AirflowAPI) -> None:
    done = _run(api, "faye_cleanup", {}, timeout=300)
    assert done["state"] == "success", done


def test_a_teardown_removes_everything_and_twice_is_green(stack, airflow_api, peers, shas) -> None:
    outcome = _deploy(airflow_api, PR_CLOSED, shas[0])
    assert _left(peers, PR_CLOSED)["tag"] and _through_proxy(stack, outcome["slot_url"]).status_code == 200

    # close through the CLI (it waits for the run and prints its outcome)
    started = time.monotonic()
    proc = faye("teardown", SERVICE, str(PR_CLOSED), check=False)
    print(f"teardown took {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run_id] = re.findall(rf"triggered faye_teardown run (hello-pr-{PR_CLOSED}-teardown-\S+)", proc.stdout)
    done = airflow_api.get(f"dags/faye_teardown/dagRuns/{run_id}")
    assert done["state"] == "success", done
    assert (
        done["note"]
        == f"torn down: hello PR {PR_CLOSED} (route {outcome['slot']}, tag pr-{PR_CLOSED}, record)"
    )
    tis = airflow_api.task_instances("faye_teardown", done["dag_run_id"])
    assert {k: v["state"] for k, v in tis.items()} == dict.fromkeys(
        ("stop_deploys", "remove_route", "remove_tag_and_record", "teardown_outcome", "report_teardown"),
        "success",
    )
    assert _left(peers, PR_CLOSED) == GONE
    assert _through_proxy(stack, outcome["slot_url"]).status_code == 404
    assert _doctor(PR_CLOSED) == []
    # the pull request is told: its deployment inactive, its comment says torn down
    github = requests.get(f"{stack['github_url']}/_double/state", timeout=10).json()["local/hello"]
    mine = [d for d in github["deployments"] if d["environment"] == f"preview/hello/pr-{PR_CLOSED}"]
    assert mine and {d["statuses"][0]["state"] for d in mine} == {"inactive"}, mine
    [comment] = [c for c in github["comments"] if c["issue_url"].endswith(f"/issues/{PR_CLOSED}")]
    assert "torn down" in comment["body"] and run_id in comment["body"], comment["body"]

    # again, through the REST API: a green no-op that says so
    again = _run(airflow_api, "faye_teardown", {"service": SERVICE, "pr": PR_CLOSED})
    assert again["state"] == "success", again
    assert again["note"] == f"no change: hello PR {PR_CLOSED} has no preview", again
    assert _left(peers, PR_CLOSED) == GONE


def test_a_bad_teardown_or_rollback_is_refused_with_400(stack, airflow_api) -> None:
    for dag_id, conf, fields in [
        ("faye_teardown", {"service": SERVICE}, ["pr"]),
        ("faye_teardown", {"service": SERVICE, "pr": 1, "git_sha": "a" * 40}, ["git_sha"]),
        ("faye_rollback", {"service": "nosuch", "pr": 1, "revision": "Not A Name"}, ["revision", "service"]),
    ]:
        before = airflow_api.get(f"dags/{dag_id}/dagRuns", limit=1)["total_entries"]
        resp = airflow_api.session.post(
            f"{airflow_api.url}/api/v2/dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": conf},
            timeout=30,
        )
        assert resp.status_code == 400, resp.text
        assert sorted(p["field"] for p in resp.json()["problems"]) == fields
        assert airflow_api.get(f"dags/{dag_id}/dagRuns", limit=1)["total_entries"] == before


def test_a_teardown_stops_a_running_deploy_of_the_pr(stack, airflow_api, peers, shas) -> None:
    """The guarded case is made to happen: Cloud Run answers the deploy's first read (GetService, in
    ``get_cloud_run_config``) 30 s late, so the teardown finds the deploy running before its safe point
    and must stop it (with the image cached, an unheld deploy reaches its writes within seconds, and
    the teardown would wait for it instead, which is the other, also correct, branch)."""
    faults = f"{stack['cloud_run_url']}/_emulator/faults"
    requests.post(
        faults, json={"method": "GetService", "count": 1, "delay_seconds": 30}, timeout=5
    ).raise_for_status()
    try:
        deploy = airflow_api.trigger("faye_deploy", {"service": SERVICE, "pr": PR_RACING, "git_sha": shas[0]})

        def held() -> bool:
            states = airflow_api.task_instances("faye_deploy", deploy["dag_run_id"])
            return states.get("get_cloud_run_config", {}).get("state") == "running"

        wait_for(
            held, "the deploy's get_cloud_run_config running (held by the slow GetService)", 120, every=1
        )
        teardown = airflow_api.trigger("faye_teardown", {"service": SERVICE, "pr": PR_RACING})
        done = airflow_api.wait_run("faye_teardown", teardown["dag_run_id"], timeout=600)
    finally:
        requests.delete(faults, timeout=5)
    assert done["state"] == "success", airflow_api.task_instances("faye_teardown", teardown["dag_run_id"])
    stopped = airflow_api.wait_run("faye_deploy", deploy["dag_run_id"], timeout=300)
    stop = airflow_api.get(
        f"dags/faye_teardown/dagRuns/{teardown['dag_run_id']}/taskInstances/stop_deploys/xcomEntries/return_value"
    )["value"]
    print(f"deploy {stopped['state']}: {stopped['note']}; stop_deploys: {stop}; teardown: {done['note']}")
    assert stop["stopped"] == [deploy["dag_run_id"]]
    assert stopped["state"] == "failed"
    assert stopped["note"].startswith(f"superseded by {teardown['dag_run_id']}"), stopped["note"]
    assert _left(peers, PR_RACING) == GONE
    assert _doctor(PR_RACING) == []


def test_a_rollback_serves_the_older_sha_on_the_same_slot_url(stack, airflow_api, peers, shas) -> None:
    from faye_plugin.hooks.cloud_run import tag_revision

    older, newer = shas[1], shas[0]
    first = _deploy(airflow_api, PR_ROLLED, older)
    second = _deploy(airflow_api, PR_ROLLED, newer)
    assert second["slot_url"] == first["slot_url"] and second["revision"] != first["revision"]
    assert newer in _through_proxy(stack, second["slot_url"]).text

    started = time.monotonic()
    proc = faye("rollback", SERVICE, str(PR_ROLLED), check=False)
    print(f"rollback took {time.monotonic() - started:.1f} s:\n{proc.stdout}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"rolled back: {first['slot_url']} now serves {older[:7]}" in proc.stdout
    answer = _through_proxy(stack, first["slot_url"])
    assert answer.status_code == 200 and older in answer.text and newer not in answer.text
    assert answer.headers["X-Faye-Sha"] == older and answer.headers["X-Faye-Revision"] == first["revision"]
    record = _left(peers, PR_ROLLED)["record"]
    assert (record.sha, record.revision, record.slot) == (older, first["revision"], first["slot"])
    assert tag_revision(_service(peers), f"pr-{PR_ROLLED}") == first["revision"]
    assert _doctor(PR_ROLLED) == []
    # GitHub (the stack's double): the newest deployment of the PR is the older commit, live at the
    # same slot URL; every other one is inactive; the comment says rolled back
    github = requests.get(f"{stack['github_url']}/_double/state", timeout=10).json()["local/hello"]
    mine = sorted(
        (d for d in github["deployments"] if d["environment"] == f"preview/hello/pr-{PR_ROLLED}"),
        key=lambda d: d["id"],
    )
    assert (mine[-1]["sha"], mine[-1]["task"], mine[-1]["statuses"][0]["state"]) == (
        older,
        "deploy:rollback",
        "success",
    )
    assert mine[-1]["statuses"][0]["environment_url"] == first["slot_url"]
    assert {d["statuses"][0]["state"] for d in mine[:-1]} == {"inactive"}
    [comment] = [c for c in github["comments"] if c["issue_url"].endswith(f"/issues/{PR_ROLLED}")]
    assert f"rolled back to `{older[:7]}`" in comment["body"], comment["body"]

    # expire: the next cleanup removes it
    proc = faye("expire", SERVICE, str(PR_ROLLED), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _left(peers, PR_ROLLED)["record"].expires <= time.time()
    _cleanup(airflow_api)
    assert _left(peers, PR_ROLLED) == GONE
    assert _through_proxy(stack, first["slot_url"]).status_code == 404
    assert _doctor(PR_ROLLED) == []


def test_rollback_errors_and_the_maximum_lifetime(stack, airflow_api, peers, shas) -> None:
    from dataclasses import replace

    from faye_plugin import preview_state

    outcome = _deploy(airflow_api, PR_OLD, shas[0])
    proc = faye("rollback", SERVICE, str(PR_OLD), check=False)
    assert proc.returncode == 1, proc.stdout
    assert (
        f"roll_back failed: hello PR {PR_OLD} has no ready revision older than {outcome['revision']}"
        in proc.stdout
    )
    proc = faye("rollback", SERVICE, str(PR_OLD), "--to", "hello-pr-9999-abcdef1", check=False)
    assert proc.returncode == 1 and "is not a revision of service hello" in proc.stdout, proc.stdout
    answer = _through_proxy(stack, outcome["slot_url"])
    assert answer.status_code == 200 and shas[0] in answer.text  # a failed rollback changed nothing

    # first deployed longer ago than the catalogue's max_lifetime_hours, expiry still ahead: removed
    lifetime = peers["spec"].max_lifetime_hours
    target = peers["spec"].cloud_run

    def age(state: preview_state.PreviewState, current: Any) -> preview_state.Planned:
        record = state.get(PR_OLD)
        assert record is not None
        born = record.deployed_at - lifetime * 3600 - 60
        return preview_state.Planned(
            preview_state.PreviewState({**state.previews, PR_OLD: replace(record, first_deployed_at=born)})
        )

    preview_state.apply(
        peers["cloud_run"],
        project=target.project,
        region=target.region,
        service=target.service,
        transition=age,
    )
    record = _left(peers, PR_OLD)["record"]
    assert record.expires > time.time() and record.born < time.time() - lifetime * 3600
    _cleanup(airflow_api)
    assert _left(peers, PR_OLD) == GONE
    assert _doctor(PR_OLD) == []
    # and the pull request is told: every deployment of its environment inactive, the comment says expired
    github = requests.get(f"{stack['github_url']}/_double/state", timeout=10).json()["local/hello"]
    mine = [d for d in github["deployments"] if d["environment"] == f"preview/hello/pr-{PR_OLD}"]
    assert mine and {d["statuses"][0]["state"] for d in mine} == {"inactive"}, mine
    [comment] = [c for c in github["comments"] if c["issue_url"].endswith(f"/issues/{PR_OLD}")]
    assert "expired" in comment["body"] and "faye_cleanup" in comment["body"], comment["body"]


def test_the_previews_page_triggers_a_teardown(stack, airflow_api) -> None:
    """The page's Tear down button: a viewer may not, the header is needed, the faye user triggers it."""
    from pathlib import Path

    from faye_testing import stack_env

    secrets = json.loads((Path(stack_env()["FAYE_HOME"]) / "secrets.json").read_text())

    def token(user: str, password: str) -> str:
        resp = requests.post(
            f"{stack['airflow_url']}/auth/token", json={"username": user, "password": password}, timeout=30
        )
        resp.raise_for_status()
        return str(resp.json()["access_token"])

    def press(user_token: str, header: bool = True) -> requests.Response:
        headers = {"Authorization": f"Bearer {user_token}"} | ({"X-Faye-Action": "1"} if header else {})
        return requests.post(
            f"{stack['airflow_url']}/faye/previews/teardown",
            json={"service": SERVICE, "pr": 805},
            headers=headers,
            timeout=120,
        )

    assert press(token("faye-viewer", secrets["viewer_password"])).status_code == 403
    faye_token = token("faye", secrets["airflow_password"])
    assert press(faye_token, header=False).status_code == 400
    answer = press(faye_token)
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["run_id"]
    assert run_id.startswith("hello-pr-805-teardown-")
    done = airflow_api.wait_run("faye_teardown", run_id, timeout=300)
    assert done["state"] == "success" and done["note"] == "no change: hello PR 805 has no preview", done
