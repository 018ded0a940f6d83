"""The previews page in the Airflow UI: behind Airflow's auth, right about what it shows, and usable.

Anonymous requests are refused (401), a viewer may look but not pin (403), the faye user pins and
the pin lands in the preview's record; Debian's chromium shows the page in the UI's navigation
(screenshot in ``.cache/artifacts/ui/``). One deploy of its own (PR 4300), so the module also runs
alone.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from faye_testing import AirflowAPI, stack_env, ui_shot

from faye_plugin.run_identity import run_id_for

pytestmark = pytest.mark.integration

PR = 4300
PAGE = "/faye/previews/"


def _secrets() -> dict[str, str]:
    return dict(json.loads((Path(stack_env()["FAYE_HOME"]) / "secrets.json").read_text()))


def _token(stack: dict[str, Any], user: str, password: str) -> str:
    resp = requests.post(
        f"{stack['airflow_url']}/auth/token", json={"username": user, "password": password}, timeout=30
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


@pytest.fixture(scope="module")
def deployed(stack: dict[str, Any], airflow_api: AirflowAPI) -> dict[str, Any]:
    sha = subprocess.run(
        ["git", "-C", stack["sample_repo"], "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    run_id = run_id_for("hello", PR, sha)
    airflow_api.trigger("faye_deploy", {"service": "hello", "pr": PR, "git_sha": sha}, run_id=run_id)
    run = airflow_api.wait_run("faye_deploy", run_id, timeout=480)
    assert run["state"] == "success", run
    return {"sha": sha, "run_id": run_id}


@pytest.fixture(scope="module")
def tokens(stack: dict[str, Any]) -> dict[str, str]:
    held = _secrets()
    return {
        "faye": _token(stack, "faye", held["airflow_password"]),
        "viewer": _token(stack, "faye-viewer", held["viewer_password"]),
    }


def _get(stack: dict[str, Any], path: str, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{stack['airflow_url']}{PAGE}{path}", headers=headers, timeout=120)


def _pin(stack: dict[str, Any], token: str | None, pinned: bool, header: bool = True) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if header:
        headers["X-Faye-Action"] = "1"
    body = {"service": "hello", "pr": PR, "pinned": pinned}
    return requests.post(f"{stack['airflow_url']}{PAGE}pin", json=body, headers=headers, timeout=120)


def test_anonymous_requests_are_refused(stack: dict[str, Any]) -> None:
    for path in ("", "previews.json"):
        resp = _get(stack, path)
        assert resp.status_code == 401, (path, resp.status_code, resp.text[:300])
    assert _pin(stack, None, True).status_code == 401


def test_the_page_lists_the_preview_with_its_url_sha_and_last_run(
    stack: dict[str, Any], deployed: dict[str, Any], tokens: dict[str, str]
) -> None:
    rows = _get(stack, "previews.json", tokens["viewer"]).json()
    row = next(r for r in rows if r["service"] == "hello" and r["pr"] == PR)
    assert row["sha"] == deployed["sha"] and row["slot_url"]
    assert row["last_run"] == {"run_id": deployed["run_id"], "state": "success"}
    page = _get(stack, "", tokens["viewer"])
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert deployed["sha"][:12] in page.text and row["slot_url"] in page.text
    assert f"/dags/faye_deploy/runs/{deployed['run_id']}" in page.text


def test_a_viewer_may_not_pin_and_the_faye_user_may(
    stack: dict[str, Any], deployed: dict[str, Any], tokens: dict[str, str]
) -> None:
    assert _pin(stack, tokens["viewer"], True).status_code == 403
    assert _pin(stack, tokens["faye"], True, header=False).status_code == 400  # not from the page
    pinned = _pin(stack, tokens["faye"], True)
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["pinned"] is True
    row = next(r for r in _get(stack, "previews.json", tokens["faye"]).json() if r["pr"] == PR)
    assert row["pinned"] is True
    assert _pin(stack, tokens["faye"], False).json()["pinned"] is False
    missing = requests.post(
        f"{stack['airflow_url']}{PAGE}pin",
        json={"service": "hello", "pr": 999999, "pinned": True},
        headers={"Authorization": f"Bearer {tokens['faye']}", "X-Faye-Action": "1"},
        timeout=120,
    )
    assert missing.status_code == 404 and "999999" in missing.json()["detail"]


def test_the_page_is_in_the_ui_navigation_in_chromium(
    stack: dict[str, Any], deployed: dict[str, Any], page: Any
) -> None:
    page.goto(f"{stack['airflow_url'].rstrip('/')}/plugin/faye-previews")  # the external view's route
    frame = page.frame_locator("iframe").first
    # the PR's row (other previews of the suite may serve the same sha)
    frame.locator("tr", has_text=f"hello-pr-{PR}-").first.wait_for(timeout=120000)
    ui_shot(page, "previews-page")
    text = frame.locator("body").inner_text()
    assert "Previews" in text and str(PR) in text
