"""The previews page: every preview of every service, in the Airflow UI's navigation.

A FastAPI app that faye's plugin mounts on the api-server (``fastapi_apps``, prefix ``/faye``) and
shows in the navigation (``external_views``: an iframe under Browse). Plugin apps are mounted with
``app.mount()`` and inherit none of the core API's auth, so this one asks for it itself: every route
needs read access to ``faye_deploy`` (no token or cookie: 401; a user without it: 403); every
action needs edit access to it, and tear down / roll back also the right to trigger ``faye_teardown``
/ ``faye_rollback`` themselves (Airflow's ``requires_access_dag``, as the edge3 provider's plugin
guards its UI routes). The page reads the API-server's JWT cookie, so the iframe needs no log-in
of its own.

What it shows comes from where faye keeps it (Cloud Run's records and tags, the proxy's routes, read
by the same function as ``faye previews``) and the PR's newest ``faye_deploy`` run from Airflow's
database. Actions (pin/unpin, tear down, roll back) are ``fetch`` calls with a JSON body and the
header ``X-Faye-Action``: a cross-site form cannot send that header, so a third-party page cannot act
through a logged-in browser. Tear down and roll back trigger ``faye_teardown`` / ``faye_rollback``
(the conf checked by the trigger gate's rules first: a bad one is 400 and no run) and answer the run
id; the run's note says how it went.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from faye_plugin.exceptions import FayeError, InvalidRequestError

log = logging.getLogger(__name__)

PREFIX = "/faye"
PAGE_PATH = "/previews/"
DEPLOY_DAG = "faye_deploy"
ACTION_HEADER = "X-Faye-Action"
RUNS_SCANNED = 500  # the newest faye_deploy runs looked at for each preview's last run


class PinBody(BaseModel):
    service: str = Field(min_length=1, max_length=63)
    pr: int = Field(gt=0)
    pinned: bool


class ActionBody(BaseModel):
    service: str = Field(min_length=1, max_length=63)
    pr: int = Field(gt=0)


#: The page's buttons that trigger a DAG: path -> (DAG, action word).
ACTION_DAGS = {"teardown": "faye_teardown", "rollback": "faye_rollback"}


def trigger_action(session: Any, dag_id: str, service: str, pr: int, user: str | None = None) -> str:
    """Trigger ``dag_id`` for the preview (conf checked as the trigger gate checks it); return the run id."""
    from datetime import UTC, datetime

    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.params import conf_problems
    from faye_plugin.run_identity import action_run_id

    conf = {"service": service, "pr": pr}
    problems = conf_problems(dag_id, conf, load_catalogue())
    if problems:
        raise InvalidRequestError("; ".join(str(p) for p in problems))
    now = datetime.now(UTC)
    run_id = action_run_id(dag_id.removeprefix("faye_"), service, pr, now)
    trigger_dag(
        dag_id,
        triggered_by=DagRunTriggeredByType.UI,
        triggering_user_name=user,
        run_id=run_id,
        conf=conf,
        logical_date=now,
        run_after=now,
        replace_microseconds=False,
        session=session,
    )
    return run_id


def last_runs(session: Any, limit: int = RUNS_SCANNED) -> dict[tuple[str, int], dict[str, str]]:
    """The newest ``faye_deploy`` run of each (service, PR) among the last ``limit`` runs."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    query = (
        select(DagRun.run_id, DagRun.state, DagRun.conf)
        .where(DagRun.dag_id == DEPLOY_DAG)
        .order_by(DagRun.run_after.desc())
        .limit(limit)
    )
    newest: dict[tuple[str, int], dict[str, str]] = {}
    for run_id, state, raw in session.execute(query):
        conf = raw if isinstance(raw, dict) else {}
        try:
            key = (str(conf["service"]), int(conf["pr"]))
        except (KeyError, TypeError, ValueError):
            continue
        newest.setdefault(key, {"run_id": str(run_id), "state": str(state)})
    return newest


def _rows() -> list[dict[str, Any]]:
    from faye_plugin.preview_listing import list_previews

    return list_previews()


def _cell(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _link(url: str | None, text: str | None = None, top: bool = False) -> str:
    if not url:
        return ""
    target = ' target="_top"' if top else ' target="_blank" rel="noopener"'
    return f'<a href="{_cell(url)}"{target}>{_cell(text or url)}</a>'


def render(rows: Sequence[dict[str, Any]], runs: dict[tuple[str, int], dict[str, str]], base: str) -> str:
    """The page's HTML: a table of ``rows`` (as ``faye previews --json`` prints them)."""
    body = []
    for row in rows:
        run = runs.get((row["service"], int(row["pr"])))
        run_cell = (
            _link(f"{base}/dags/{DEPLOY_DAG}/runs/{run['run_id']}", run["state"], top=True) if run else ""
        )
        pinned = bool(row.get("pinned"))
        who = f'data-service="{_cell(row["service"])}" data-pr="{int(row["pr"])}"'
        action = (
            f'<button {who} data-action="pin" data-pinned="{str(not pinned).lower()}">'
            f"{'Unpin' if pinned else 'Pin'}</button> "
            f'<button {who} data-action="rollback" title="back to its previous ready revision">'
            "Roll back</button> "
            f'<button {who} data-action="teardown" title="remove route, tag, slot claim and record">'
            "Tear down</button>"
        )
        body.append(
            "<tr>"
            f"<td>{_cell(row['service'])}</td><td>{int(row['pr'])}</td>"
            f"<td>{_cell(row.get('slot'))}</td>"
            f"<td>{_link(row.get('slot_url'))}</td>"
            f"<td><code>{_cell((row.get('sha') or '')[:12])}</code></td>"
            f"<td>{_cell(row.get('revision'))}</td><td>{_cell(row.get('expires'))}</td>"
            f"<td>{'yes' if pinned else 'no'}</td><td>{run_cell}</td><td>{action}</td>"
            "</tr>"
        )
    empty = '<tr><td colspan="10">No previews yet: <code>faye deploy SERVICE PR --sha SHA</code></td></tr>'
    return PAGE.format(rows="\n".join(body) or empty, header=ACTION_HEADER)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>faye previews</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a202c; }}
 h1 {{ font-size: 1.4rem; }} table {{ border-collapse: collapse; width: 100%; }}
 th, td {{ text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #e2e8f0; font-size: .9rem; }}
 th {{ background: #f7fafc; }} #status {{ margin: .5rem 0; min-height: 1.2em; }}
 .error {{ color: #c53030; }}
</style></head>
<body>
<h1>Previews</h1>
<p>Every preview faye keeps, read from Cloud Run and the proxy. Times are UTC.</p>
<div id="status" role="status"></div>
<table>
<thead><tr><th>Service</th><th>PR</th><th>Slot</th><th>Slot URL</th><th>Sha</th><th>Revision</th>
<th>Expires</th><th>Pinned</th><th>Last run</th><th></th></tr></thead>
<tbody>
{rows}
</tbody></table>
<script>
for (const button of document.querySelectorAll("button[data-service]")) {{
  button.addEventListener("click", async () => {{
    const status = document.getElementById("status");
    const action = button.dataset.action;
    const who = button.dataset.service + " PR " + button.dataset.pr;
    if (action === "teardown" && !confirm("Tear down the preview of " + who + "?")) return;
    status.className = ""; status.textContent = "working...";
    const body = {{service: button.dataset.service, pr: Number(button.dataset.pr)}};
    if (action === "pin") body.pinned = button.dataset.pinned === "true";
    const answer = await fetch(action, {{method: "POST", credentials: "same-origin",
      headers: {{"Content-Type": "application/json", "{header}": "1"}}, body: JSON.stringify(body)}});
    if (answer.ok && action !== "pin") {{
      status.textContent = action + " of " + who + " triggered: run " + (await answer.json()).run_id;
      return;
    }}
    if (answer.ok) {{ location.reload(); return; }}
    status.className = "error";
    status.textContent = answer.status + ": " + ((await answer.json()).detail || answer.statusText);
  }});
}}
</script>
</body></html>
"""


def create_app() -> FastAPI:
    """The app faye's plugin mounts at ``/faye`` on the api-server."""
    app = FastAPI(
        title="faye previews",
        dependencies=[Depends(requires_access_dag("GET", param_dag_id=DEPLOY_DAG))],
    )

    @app.get(PAGE_PATH, response_class=HTMLResponse)
    def page(request: Request, session: SessionDep) -> HTMLResponse:
        base = str(request.base_url).rstrip("/").removesuffix(PREFIX)
        return HTMLResponse(render(_rows(), last_runs(session), base))

    @app.get(f"{PAGE_PATH}previews.json")
    def previews(session: SessionDep) -> list[dict[str, Any]]:
        runs = last_runs(session)
        return [{**row, "last_run": runs.get((row["service"], int(row["pr"])))} for row in _rows()]

    @app.post(
        f"{PAGE_PATH}pin",
        dependencies=[Depends(requires_access_dag("PUT", param_dag_id=DEPLOY_DAG))],
    )
    def pin(body: PinBody, x_faye_action: str | None = Header(default=None)) -> dict[str, Any]:
        from faye_plugin.preview_listing import set_pinned

        if x_faye_action != "1":
            raise HTTPException(400, f"the {ACTION_HEADER} header is missing (actions come from the page)")
        try:
            return set_pinned(body.service, body.pr, body.pinned)
        except InvalidRequestError as exc:
            raise HTTPException(404, str(exc)) from exc
        except FayeError as exc:
            raise HTTPException(400, str(exc)) from exc

    for path, dag_id in ACTION_DAGS.items():
        _add_action(app, path, dag_id)
    return app


def _add_action(app: FastAPI, path: str, dag_id: str) -> None:
    """``POST /previews/<path>``: trigger ``dag_id`` for one preview. It needs edit access to
    ``faye_deploy`` (as every action of the page) and what Airflow's own ``POST /dags/{dag_id}/dagRuns``
    needs: the right to create a run of ``dag_id`` itself."""

    @app.post(
        f"{PAGE_PATH}{path}",
        dependencies=[
            Depends(requires_access_dag("PUT", param_dag_id=DEPLOY_DAG)),
            Depends(requires_access_dag("POST", access_entity=DagAccessEntity.RUN, param_dag_id=dag_id)),
        ],
        name=path,
    )
    def act(
        body: ActionBody,
        session: SessionDep,
        user: GetUserDep,
        x_faye_action: str | None = Header(default=None),
    ) -> dict[str, Any]:
        if x_faye_action != "1":
            raise HTTPException(400, f"the {ACTION_HEADER} header is missing (actions come from the page)")
        try:
            run_id = trigger_action(session, dag_id, body.service, body.pr, user.get_name())
        except FayeError as exc:
            raise HTTPException(400, str(exc)) from exc
        log.info("previews page: %s triggered %s run %s", user.get_name(), dag_id, run_id)
        return {"dag_id": dag_id, "run_id": run_id}


def app_spec() -> dict[str, Any]:
    """The plugin's ``fastapi_apps`` entry."""
    return {"app": create_app(), "url_prefix": PREFIX, "name": "faye previews"}
