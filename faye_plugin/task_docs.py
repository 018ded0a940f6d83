"""What each task of faye's DAGs does, in a line or two: the "Task Instance Details" doc of the UI.

DAG files call :func:`document` once, after wiring their tasks; a task that already has a doc of its
own (an ``@task`` function's docstring, an explicit ``doc_md``) keeps it. Keyed by task id (with its
group prefix); tests/unit/test_task_docs.py fails when a task of a faye DAG has no doc.
"""

from __future__ import annotations

from typing import Any

TASK_DOCS: dict[str, str] = {
    "supersede_older_runs": (
        "Cancels older deploys of the same PR that have not reached their safe point (their note becomes "
        "`superseded by <this run>`). Fails, as superseded, if a newer deploy of the PR exists. Runs beside "
        "the reads; the safe point `still_newest` waits for it."
    ),
    "get_cloud_run_config": (
        "Checks the request (service, slot, Cloud Run's limits, the commit), reads the service and the "
        "proxy, and **chooses the slot**. An unknown service, slot or commit fails here, before anything "
        "changes."
    ),
    "extend_expiry": (
        "Pushes the preview's expiry to now + `ttl_hours` before anything else changes, so even a failed "
        "preview expires (annotation `faye.dev/previews`). Runs beside `check_cloud_run` and `check_image`."
    ),
    "check_cloud_run": (
        "Is this sha already served under `pr-<N>` in the chosen slot, routed? Then this run is a **no-op**: "
        "the following steps show as skipped (pink) and the run ends green with the same URL."
    ),
    "check_image": "Looks up `<service>:<sha>` in the registry (no pull). Found: no build.",
    "should_build": (
        "Chooses the path: nothing (no-op, only if `extend_expiry` extended the very revision "
        "`check_cloud_run` found), `build` (image missing or `force_build`), or straight to `join`. A "
        "**skipped build** means the image already existed."
    ),
    "build.build_image": (
        "Fetches the source at the sha and builds the image on the builder host (output in this log)."
    ),
    "build.push_image": "Tags the built image `<repo>:<full sha>` and pushes it to the registry.",
    "join": "Joins the build and no-build paths (runs when one of them succeeded).",
    "prepare_configs": (
        "Renders the environment, `.env` and `docker-compose.yaml` for the slot (kept as artifacts "
        "under `<artifacts>/faye_deploy/<run id>/`). Secrets are resolved, never shown."
    ),
    "still_newest": (
        "The safe point before the first write: proceeds, **waits** (deferred; the note says for what) "
        "while an older deploy of the PR writes, or ends this run as superseded. Claims the slot."
    ),
    "release_slot": (
        "Removes the preview that held the slot before (its route, then its tag), if it was another PR's."
    ),
    "deploy_revision": (
        "Deploys a new revision under tag `pr-<N>` with no production traffic and waits (deferred) until "
        "it is ready. A revision that never becomes ready is undone."
    ),
    "update_proxy": "Routes the slot's hostname to the tag's URL: from now on the slot URL shows this PR.",
    "test.wait_for_preview": "Waits until the preview answers 2xx at its slot URL.",
    "test.run_tests": (
        "Leases a test server (pool `faye_test_servers`; waits deferred when all are busy) and runs the "
        "service's tests against the preview; their output and result are in this log."
    ),
    "preview_url": (
        "The run's outcome: the preview's slot URL, tag URL and revision (also written into the run note)."
    ),
    "validate": "Checks the conf (every bad field at once) and that the catalogue knows the service.",
    "resolve_preview": "Finds the URL of the PR's preview (its slot's route, or conf `slot`).",
    "find_expired": "Lists, per service, the previews whose expiry has passed and that are not pinned.",
    "remove_expired": (
        "Removes one service's expired previews per mapped instance: their proxy routes, then all their "
        "Cloud Run tags and records (slot claims) in one write. Re-checks each expiry on the state it "
        "writes over, so a preview renewed meanwhile stays."
    ),
    "repair_lost": (
        "faye's self-repair (the same as `faye doctor --fix`): records and routes of previews whose tag "
        "Cloud Run deleted on its own, tags without a slot claim, routes to nothing or to the wrong "
        "preview, leases of finished tasks. A deploy in flight is never touched."
    ),
    "remove_dangling": "Removes proxy routes that point at a tag Cloud Run no longer serves.",
    "remove_unused_revisions": (
        "Deletes preview revisions that no traffic target refers to any more (but each preview's "
        "rollback target: its newest ready revision older than the one it serves)."
    ),
    "stop_deploys": (
        "Supersedes the PR's older deploys: stops one before its safe point at once, **waits** (deferred; "
        "the note says for what) while one is inside its writes, then stops it. Steps aside, as "
        "superseded, for a deploy triggered after this run."
    ),
    "remove_route": "Removes the PR's slot route(s) from the proxy, before its tag goes.",
    "remove_tag_and_record": (
        "Removes the PR's Cloud Run tag and its record (its slot claim) in one write. Nothing there: a no-op."
    ),
    "report_started": (
        "GitHub (services with a `github` block): the deployment of this commit to the environment "
        "`preview/<service>/pr-<N>`, status `in_progress`. A failure is a warning here; `report_outcome` "
        "tries again."
    ),
    "report_outcome": (
        "GitHub: the deployment's `success` (slot URL) or `failure` (the failed step), the tests' commit "
        "status `faye/<service>/tests` and the PR's one faye comment. Runs last whatever happened; red "
        "here never fails the run: the preview is deployed (or not) all the same."
    ),
    "report_teardown": (
        "GitHub: the PR's deployments become `inactive` and its faye comment says the preview was torn "
        "down. Red here never fails the run."
    ),
    "report_expired": (
        "GitHub: for each expired preview `remove_expired` removed, the PR's deployments become "
        "`inactive` and its faye comment says it expired. Red here never fails the cleanup."
    ),
    "report_rollback": (
        "GitHub: a new deployment of the commit the preview serves again, `success` at the same slot URL "
        "(the PR's others `inactive`), and the comment says rolled back. Red here never fails the run."
    ),
    "teardown_outcome": "The run's outcome: what was removed, or that there was nothing (the run note).",
    "roll_back": (
        "Moves tag `pr-<N>` back to the PR's previous ready revision (or conf `revision`) and updates its "
        "record, in one write. No earlier ready revision: fails, naming what to do."
    ),
    "rollback_outcome": "The run's outcome: the slot URL, the revision and sha it serves now (the run note).",
}


def document(dag: Any) -> Any:
    """Give every task of ``dag`` without a doc the one from :data:`TASK_DOCS`; return ``dag``."""
    for task in dag.tasks:
        if task.task_id in TASK_DOCS and not (getattr(task, "doc_md", None) or getattr(task, "doc", None)):
            partial = getattr(task, "partial_kwargs", None)  # a mapped task keeps its doc there
            if isinstance(partial, dict):
                partial["doc_md"] = TASK_DOCS[task.task_id]
            else:
                task.doc_md = TASK_DOCS[task.task_id]
    return dag
