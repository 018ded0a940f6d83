"""The Airflow UI as a person sees it: Debian's chromium (Playwright) logs in through the form and reads
a faye run's PR and outcome in the runs list and its note on the run's page; REST agrees. The trigger
form of ``faye_deploy`` refuses a bad value visibly (``pr = -1`` stays -1, the gate's 400 is shown in
the form) and no run is made.

Lean: one failed deploy that passes the trigger's validation (a sha the sample repository lacks), so it
fails fast at ``get_cloud_run_config``. Screenshots go to ``.cache/artifacts/ui/`` (gitignored).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from faye_testing import AirflowAPI, ui_shot

from faye_plugin.run_identity import run_id_for

pytestmark = pytest.mark.integration

MISSING_SHA = "deadbee"


@pytest.fixture(scope="module")
def failed_run(airflow_api: AirflowAPI) -> dict[str, Any]:
    run_id = run_id_for("hello", 4242, MISSING_SHA)
    airflow_api.trigger(
        "faye_deploy", {"service": "hello", "pr": 4242, "git_sha": MISSING_SHA}, run_id=run_id
    )
    return _wait_or_explain(airflow_api, run_id, timeout=600)


def _wait_or_explain(api: AirflowAPI, run_id: str, timeout: float) -> dict[str, Any]:
    """The finished run; past ``timeout``, fail naming what held it up (this run's task states, and
    every run still active on the stack: an executor slot, a pool or the scheduler?)."""
    deadline = time.monotonic() + timeout
    while True:
        run = dict(api.get(f"dags/faye_deploy/dagRuns/{run_id}"))
        if run["state"] in ("success", "failed"):
            return run
        if time.monotonic() > deadline:
            break
        time.sleep(2)
    states = {t: ti["state"] for t, ti in api.task_instances("faye_deploy", run_id).items() if ti["state"]}
    active = api.get("dags/~/dagRuns", state=["running", "queued"], limit=100)
    others = sorted(f"{r['dag_id']}/{r['dag_run_id']}: {r['state']}" for r in active["dag_runs"])
    running = api.get("dags/~/dagRuns/~/taskInstances", state=["running", "queued"], limit=100)
    busy = sorted(
        f"{t['dag_id']}/{t['dag_run_id']}/{t['task_id']}: {t['state']}" for t in running["task_instances"]
    )
    pytest.fail(
        f"{run_id} still {run['state']} after {timeout:.0f} s; its tasks: {states}; "
        f"active runs ({active['total_entries']}): {others}; running/queued tasks: {busy}"
    )


def test_rest_shows_the_readable_id_and_the_failed_step(failed_run: dict[str, Any]) -> None:
    assert failed_run["dag_run_id"].startswith(f"hello-pr-4242-{MISSING_SHA}-")
    assert failed_run["state"] == "failed"
    note = failed_run["note"]
    assert note.startswith("failed at get_cloud_run_config: "), note
    assert MISSING_SHA in note and "hello PR 4242" in note


def _text(page: Any, wanted: str, timeout: float = 240) -> str:
    """The page's text once it contains ``wanted`` (polled: the shared machine can be slow)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = str(page.evaluate("document.body.innerText"))
        except Exception:  # the page is still busy rendering
            text = ""
        if wanted in text:
            return text
        page.wait_for_timeout(2000)
    pytest.fail(f"{wanted!r} never shown on {page.url}; last text: {text[:1500]}")


def test_runs_list_and_run_page_in_chromium(
    stack: dict[str, Any], page: Any, failed_run: dict[str, Any]
) -> None:
    url = stack["airflow_url"].rstrip("/")
    run_id = failed_run["dag_run_id"]
    page.goto(f"{url}/dags/faye_deploy/runs")
    listed = _text(page, run_id)
    ui_shot(page, "runs-list")
    assert "Failed" in listed  # the PR is in the run id, the outcome in its state

    page.goto(f"{url}/dags/faye_deploy/runs/{run_id}")
    shown = _text(page, "failed at get_cloud_run_config")
    ui_shot(page, "failed-run")
    assert MISSING_SHA in shown


def _runs(api: AirflowAPI) -> tuple[int, list[dict[str, Any]]]:
    data = api.get("dags/faye_deploy/dagRuns", limit=100, order_by="-run_after")
    return int(data["total_entries"]), list(data["dag_runs"])


BAD_SERVICE = "Bad_Name!"


def test_the_trigger_form_refuses_a_bad_value_visibly_and_makes_no_run(
    stack: dict[str, Any], page: Any, airflow_api: AirflowAPI
) -> None:
    """Airflow 3.3's form hands ``minimum``/``maximum`` to its number input, which clamps on blur (-1
    became 1); faye's schema says ``exclusiveMinimum``, which the form does not pass on: -1 stays -1,
    the form posts it, the trigger gate answers 400 and the form shows that answer above its fields."""
    url = stack["airflow_url"].rstrip("/")
    before, _ = _runs(airflow_api)
    page.goto(f"{url}/dags/faye_deploy")
    page.get_by_role("button", name="Trigger").first.click()
    form = page.locator("[role=dialog][data-state=open]")
    form.locator("input[name=element_service]").fill(BAD_SERVICE)
    form.locator("input[name=element_pr]").fill("-1")
    form.locator("input[name=element_git_sha]").fill("f" * 40)  # well-formed: not a problem
    form.locator("input[name=element_slot]").click()  # the number field loses focus: no clamping
    page.wait_for_timeout(500)
    assert form.locator("input[name=element_pr]").input_value() == "-1"
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/api/v2/dags/faye_deploy/dagRuns")
    ) as answer:
        form.get_by_role("button", name="Trigger").last.click()
    posted = answer.value.request.post_data_json
    assert posted["conf"]["pr"] == -1 and posted["conf"]["service"] == BAD_SERVICE, posted
    assert answer.value.status == 400, answer.value.text()
    alert = form.get_by_text("faye_deploy refuses this trigger")
    alert.wait_for(state="visible")
    alert.scroll_into_view_if_needed()
    shown = alert.inner_text()
    ui_shot(page, "trigger-form-refused")
    assert "pr: -1 is less than the minimum of 1" in shown, shown
    assert f'service: "{BAD_SERVICE}" does not match' in shown, shown
    assert form.is_visible()  # the form stays open with what was typed, to be corrected
    after, runs = _runs(airflow_api)
    assert after == before, "a refused trigger made a run"
    assert not [r for r in runs if (r.get("conf") or {}).get("pr") == -1]
