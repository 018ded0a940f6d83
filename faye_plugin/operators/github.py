"""Report a preview to its pull request on GitHub (docs/github.md): deployments, a commit status, a comment.

Only services whose catalogue entry has a ``github`` block report; for the others every task here
returns at once (None). Reporting never decides a preview's fate:

- ``report_started`` (:class:`ReportStartedOperator`, beside the deploy's reads): the deployment of the
  PR's commit to the environment ``preview/<service>/pr-<N>`` and its status ``in_progress``. A failure
  here is logged as a warning and the task stays green: ``report_outcome`` tries again.
- ``report_outcome`` (:class:`ReportOutcomeOperator`, after everything, an Airflow *teardown* task so
  that it runs whatever happened and its own failure never fails the run): ``success`` with the slot URL
  or ``failure`` naming the failed step (``inactive`` when a newer deploy superseded the run), the
  tests' commit status ``faye/<service>/tests``, and the one comment per (service, PR).
- ``report_teardown`` (:class:`ReportTeardownOperator`, ``faye_teardown``): the PR's deployments become
  ``inactive`` and the comment says the preview was torn down.
- ``report_expired`` (:class:`ReportExpiredOperator`, ``faye_cleanup``): each expired preview it
  removed, as for a teardown.
- ``report_rollback`` (:class:`ReportRollbackOperator`, ``faye_rollback``): a new deployment of the
  commit the preview serves again, ``success`` at the same slot URL; the others of the PR ``inactive``;
  the comment says rolled back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperator

from faye_plugin.catalogue import GithubTarget, load_catalogue
from faye_plugin.exceptions import FayeError, GithubReportError, SupersededError
from faye_plugin.links import PullRequestLink
from faye_plugin.task_errors import REASON_KEY

if TYPE_CHECKING:
    from airflow.sdk import Context

    from faye_plugin.hooks.github import GithubReportHook

FULL_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
#: Deployment states that mean "not over yet": an older one of these left behind is made inactive.
UNFINISHED = ("in_progress", "queued", "pending")
REPORT_TASKS = ("report_started", "report_outcome")


def environment_name(service: str, pr: int) -> str:
    """The GitHub environment of one preview: one per (service, PR), so only the PR's own deployments
    replace each other (GitHub keeps one deployment per environment active)."""
    return f"preview/{service}/pr-{pr}"


def tests_context(service: str) -> str:
    """The commit status context of a service's tests."""
    return f"faye/{service}/tests"


def run_url(dag_id: str, run_id: str, task_id: str | None = None) -> str:
    """The Airflow UI's page of a run (or of one task's log in it)."""
    from faye_plugin.settings import airflow_url

    url = f"{airflow_url()}/dags/{quote(dag_id)}/runs/{quote(run_id)}"
    return f"{url}/tasks/{quote(task_id)}" if task_id else url


def _target(service: str) -> GithubTarget | None:
    return load_catalogue().service(service).github


def _hook(target: GithubTarget) -> GithubReportHook:
    from faye_plugin.hooks.github import GithubReportHook

    return GithubReportHook(target.repo, target.conn_id)


def _expiry(expires: Any) -> str:
    if isinstance(expires, int | float) and expires > 0:
        return datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(expires) if expires else "unknown"


def comment_body(
    service: str,
    pr: int,
    *,
    headline: str,
    rows: Sequence[tuple[str, str]],
) -> str:
    """The sticky comment: its hidden marker, a headline and a two-column table."""
    from faye_plugin.hooks.github import marker

    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    title = f"### faye preview of `{service}` for PR #{pr}: {headline}"
    return f"{marker(service)}\n{title}\n\n| | |\n|---|---|\n{table}\n"


class ReportStartedOperator(BaseOperator):
    """Create the GitHub deployment of the PR's commit and mark it ``in_progress``.

    :param service: the catalogue's service (templated).
    :param pr: the pull request number (templated).
    :param git_sha: the full commit sha (templated; ``get_cloud_run_config`` resolves it).
    """

    template_fields: Sequence[str] = ("service", "pr", "git_sha")
    operator_extra_links = (PullRequestLink(),)

    def __init__(self, *, service: str, pr: int | str, git_sha: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr
        self.git_sha = git_sha

    def execute(self, context: Context) -> dict[str, Any] | None:
        target = _target(self.service)
        if target is None:
            self.log.info("Service %s has no github block in the catalogue: nothing to report", self.service)
            return None
        if not FULL_SHA_RE.match(self.git_sha):
            raise ValueError(f"git_sha {self.git_sha!r} is not a full 40-hex sha")
        pr = int(self.pr)
        environment = environment_name(self.service, pr)
        dag_run = context["dag_run"]
        link = ""
        try:
            hook = _hook(target)
            link = hook.pull_request_url(pr)
            deployment = hook.ensure_deployment(
                environment,
                self.git_sha,
                description=f"{self.service} PR {pr} at {self.git_sha[:7]}",
                payload={"service": self.service, "pr": pr, "run_id": dag_run.run_id},
            )
            hook.post_deployment_status(
                deployment,
                "in_progress",
                description=f"faye is deploying {self.git_sha[:7]}",
                log_url=run_url(dag_run.dag_id, dag_run.run_id),
            )
        except GithubReportError as err:
            # Reporting the start is a courtesy: report_outcome reports again (and fails visibly).
            self.log.warning("Could not report the start to GitHub: %s (report_outcome tries again)", err)
            return {
                "repo": target.repo,
                "environment": environment,
                "deployment_id": None,
                "error": str(err),
                "pull_request_url": link,
            }
        self.log.info("GitHub deployment %s of %s in %s: in_progress", deployment, target.repo, environment)
        return {
            "repo": target.repo,
            "environment": environment,
            "deployment_id": deployment,
            "pull_request_url": link,
        }


def _states(context: Context) -> dict[str, str]:
    """This run's task states by task id (one call to the execution API)."""
    ti: Any = context["ti"]
    dag_run = context["dag_run"]
    found = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id]) or {}
    states = found.get(dag_run.run_id, {}) if isinstance(found, dict) else {}
    return {str(k): str(v) for k, v in states.items()}


def _first_failure(context: Context, states: dict[str, str]) -> str | None:
    failed = {t for t, s in states.items() if s in ("failed", "upstream_failed") and t not in REPORT_TASKS}
    failed = {t for t in failed if states[t] == "failed"} or failed
    if not failed:
        return None
    order = [t.task_id for t in context["dag"].topological_sort()]
    return min(failed, key=lambda t: order.index(t) if t in order else len(order))


class ReportOutcomeOperator(BaseOperator):
    """Report how the deploy ended: deployment status, the tests' commit status, the sticky comment.

    :param service: the catalogue's service (templated).
    :param pr: the pull request number (templated).
    :param git_sha: the commit as requested (templated); the full sha is read from ``get_cloud_run_config``.
    """

    template_fields: Sequence[str] = ("service", "pr", "git_sha")

    def __init__(self, *, service: str, pr: int | str, git_sha: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr
        self.git_sha = git_sha

    def execute(self, context: Context) -> dict[str, Any] | None:
        evicted = self._report_evicted(context)
        result = self._report(context)
        if evicted:
            raise GithubReportError(f"reporting the evicted previews failed: {'; '.join(evicted)}")
        return result

    def _report_evicted(self, context: Context) -> list[str]:
        """Each preview ``release_slot`` removed to free the slot (of a service with a ``github``
        block) is reported gone, as a teardown is; returns the reports that failed."""
        ti: Any = context["ti"]
        dag_run = context["dag_run"]
        released = ti.xcom_pull(task_ids="release_slot") or {}
        failed = []
        for removal in released.get("released") or []:
            if not (removal.get("record_removed") or removal.get("tag_removed")):
                continue
            service, pr = str(removal["service"]), int(removal["pr"])
            try:
                target = _target(service)
                if target is None:
                    continue
                report_gone(
                    target,
                    service,
                    pr,
                    dag_id=dag_run.dag_id,
                    run_id=dag_run.run_id,
                    done="evicted",
                    what=f"its slot {released.get('slot')} went to {self.service} PR {self.pr}",
                )
            except FayeError as err:
                failed.append(f"{service} PR {pr}: {err}")
        return failed

    def _report(self, context: Context) -> dict[str, Any] | None:
        target = _target(self.service)
        if target is None:
            self.log.info("Service %s has no github block in the catalogue: nothing to report", self.service)
            return None
        ti: Any = context["ti"]
        dag_run = context["dag_run"]
        pr = int(self.pr)
        config = ti.xcom_pull(task_ids="get_cloud_run_config") or {}
        sha = str(config.get("git_sha") or self.git_sha)
        if not FULL_SHA_RE.match(sha):
            self.log.warning("The request failed before its commit %s was resolved: nothing to report", sha)
            return None
        states = _states(context)
        failed = _first_failure(context, states)
        reason = str(ti.xcom_pull(task_ids=failed, key=REASON_KEY) or "") if failed else ""
        # Superseded at its safe point (the step's reason says so), or stopped from outside (a newer
        # deploy or a teardown marked the run failed: its killed tasks recorded no reason): inactive.
        superseded = bool(failed) and (SupersededError.hint in reason or not reason)
        outcome = ti.xcom_pull(task_ids="preview_url") or {}
        expiry = ti.xcom_pull(task_ids="extend_expiry") or {}
        started = ti.xcom_pull(task_ids="report_started") or {}
        environment = environment_name(self.service, pr)
        hook = _hook(target)
        link = run_url(dag_run.dag_id, dag_run.run_id)
        deployment = started.get("deployment_id") or hook.ensure_deployment(
            environment,
            sha,
            description=f"{self.service} PR {pr} at {sha[:7]}",
            payload={"service": self.service, "pr": pr, "run_id": dag_run.run_id},
        )
        slot_url = str(outcome.get("slot_url") or "")
        tests = states.get("test.run_tests")
        if superseded:
            state = "inactive"
            if reason:
                words = f"superseded: {reason.split(' - ')[0]}"
            else:
                words = f"stopped at {failed} (superseded, torn down or killed): see the run note"
        elif slot_url and outcome:
            state = "success"
            words = "no change: already serving this commit" if outcome.get("noop") else "deployed"
        else:
            state, words = "failure", f"failed at {failed or 'an unknown step'}: {reason or 'see its log'}"
        hook.post_deployment_status(
            deployment,
            state,
            description=words,
            log_url=run_url(dag_run.dag_id, dag_run.run_id, failed) if state == "failure" else link,
            environment_url=slot_url if state == "success" else None,
        )
        # An older deployment of this PR left unfinished (its run was superseded and ended) is over.
        for other in hook.deployments(environment):
            if other.id != deployment and other.state in UNFINISHED:
                hook.post_deployment_status(
                    other.id, "inactive", description=f"superseded by {dag_run.run_id}", log_url=link
                )
        if superseded:
            return {"deployment_id": deployment, "state": state}
        context_name = tests_context(self.service)
        tests_url = run_url(dag_run.dag_id, dag_run.run_id, "test.run_tests")
        if tests in ("success", "failed"):
            result = "success" if tests == "success" else "failure"
            hook.set_commit_status(
                sha,
                result,
                context=context_name,
                description=f"tests {'passed' if tests == 'success' else 'failed'} on the preview",
                target_url=tests_url,
            )
            tests_words = f"[{'passed' if tests == 'success' else 'failed'}]({tests_url})"
        else:
            known = hook.commit_status(sha, context_name)
            tests_words = f"not run in this run (last result for this commit: {known or 'none'})"
        headline = {"success": "✅ " + words, "failure": "❌ " + words}.get(state, words)
        rows = [
            ("Preview", slot_url or "none (see the run)"),
            ("Commit", f"`{sha[:7]}` (`{sha}`)"),
            ("Tests", tests_words),
            ("Expires", _expiry(expiry.get("expires"))),
            ("Pinned", "yes" if expiry.get("pinned") else "no"),
            ("Run", f"[{dag_run.run_id}]({link})"),
        ]
        comment_id, created = hook.upsert_comment(
            pr, _marker(self.service), comment_body(self.service, pr, headline=headline, rows=rows)
        )
        self.log.info(
            "Reported to %s: deployment %s %s, tests %s, comment %s (%s)",
            target.repo,
            deployment,
            state,
            tests,
            comment_id,
            "created" if created else "updated",
        )
        return {"deployment_id": deployment, "state": state, "comment_id": comment_id}


def _marker(service: str) -> str:
    from faye_plugin.hooks.github import marker

    return marker(service)


class ReportTeardownOperator(BaseOperator):
    """After a teardown: the PR's deployments become ``inactive``, and its comment says so.

    :param service: the catalogue's service (templated).
    :param pr: the pull request number (templated).
    """

    template_fields: Sequence[str] = ("service", "pr")

    def __init__(self, *, service: str, pr: int | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr

    def execute(self, context: Context) -> dict[str, Any] | None:
        target = _target(self.service)
        if target is None:
            self.log.info("Service %s has no github block in the catalogue: nothing to report", self.service)
            return None
        ti: Any = context["ti"]
        summary = ti.xcom_pull(task_ids="teardown_outcome")
        if not summary:
            self.log.info("The teardown did not finish (see its failed step): nothing to report")
            return None
        dag_run = context["dag_run"]
        what = "nothing was left to remove" if summary.get("noop") else "route, tag and record removed"
        return report_gone(
            target,
            self.service,
            int(self.pr),
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            done="torn down",
            what=what,
        )


def report_gone(
    target: GithubTarget, service: str, pr: int, *, dag_id: str, run_id: str, done: str, what: str
) -> dict[str, Any]:
    """A preview that is gone (``done``: "torn down", "expired", "evicted"): the PR's deployments become
    ``inactive`` and the comment says what happened, when, and by which run."""
    import logging

    link = run_url(dag_id, run_id)
    hook = _hook(target)
    made_inactive = []
    for deployment in hook.deployments(environment_name(service, pr)):
        if deployment.state != "inactive":
            hook.post_deployment_status(
                deployment.id, "inactive", description=f"preview {done}", log_url=link
            )
            made_inactive.append(deployment.id)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    icon = {"torn down": "🗑️", "expired": "⌛", "evicted": "↪️"}.get(done, "🗑️")
    body = comment_body(
        service,
        pr,
        headline=f"{icon} {done}",
        rows=[("Preview", f"{done} at {when} ({what})"), ("Run", f"[{run_id}]({link})")],
    )
    comment = hook.update_comment(pr, _marker(service), body)
    logging.getLogger(__name__).info(
        "Reported %s PR %d %s to %s: inactive %s, comment %s",
        service,
        pr,
        done,
        target.repo,
        made_inactive,
        comment,
    )
    return {"inactive": made_inactive, "comment_id": comment}


class ReportExpiredOperator(BaseOperator):
    """After ``faye_cleanup``'s ``remove_expired``: each removed preview of a service with a ``github``
    block is reported gone (deployments ``inactive``, the comment says expired).

    :param removals: what the mapped ``remove_expired`` returned, one ``{"service", "removed": [PR],
        "kept"}`` per service (templated: pass its XComArg).
    """

    template_fields: Sequence[str] = ("removals",)

    def __init__(self, *, removals: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.removals = removals

    def execute(self, context: Context) -> list[dict[str, Any]]:
        dag_run = context["dag_run"]
        reported, failed = [], []
        for result in list(self.removals or []):
            if not isinstance(result, dict):
                continue
            service = str(result.get("service"))
            target = _target(service)
            for pr in result.get("removed") or []:  # the PRs whose record went
                if target is None:
                    continue
                try:
                    report_gone(
                        target,
                        service,
                        int(pr),
                        dag_id=dag_run.dag_id,
                        run_id=dag_run.run_id,
                        done="expired",
                        what="removed by faye_cleanup",
                    )
                except GithubReportError as err:
                    failed.append(f"{service} PR {pr}: {err}")
                    continue
                reported.append({"service": service, "pr": int(pr)})
        if failed:
            raise GithubReportError("; ".join(failed))
        self.log.info("Reported %d expired preview(s) to GitHub", len(reported))
        return reported


class ReportRollbackOperator(BaseOperator):
    """After a rollback: a new deployment of the older commit, ``success`` at the slot URL; the comment.

    :param service: the catalogue's service (templated).
    :param pr: the pull request number (templated).
    """

    template_fields: Sequence[str] = ("service", "pr")

    def __init__(self, *, service: str, pr: int | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.pr = pr

    def execute(self, context: Context) -> dict[str, Any] | None:
        target = _target(self.service)
        if target is None:
            self.log.info("Service %s has no github block in the catalogue: nothing to report", self.service)
            return None
        ti: Any = context["ti"]
        rolled = ti.xcom_pull(task_ids="rollback_outcome") or {}
        sha, slot_url = str(rolled.get("sha") or ""), str(rolled.get("slot_url") or "")
        if not FULL_SHA_RE.match(sha) or not slot_url:
            self.log.info("The rollback did not finish (see its failed step): nothing to report")
            return None
        dag_run = context["dag_run"]
        pr = int(self.pr)
        environment = environment_name(self.service, pr)
        link = run_url(dag_run.dag_id, dag_run.run_id)
        hook = _hook(target)
        was = str(rolled.get("from_sha") or "")[:7] or "?"
        deployment = hook.create_deployment(
            environment,
            sha,
            description=f"{self.service} PR {pr} rolled back to {sha[:7]} (was {was})",
            payload={"service": self.service, "pr": pr, "run_id": dag_run.run_id},
            task="deploy:rollback",
        )
        hook.post_deployment_status(
            deployment,
            "success",
            description=f"rolled back to {sha[:7]} (was {was})",
            log_url=link,
            environment_url=slot_url,
        )
        for other in hook.deployments(environment):
            if other.id != deployment and other.state != "inactive":
                hook.post_deployment_status(
                    other.id, "inactive", description=f"rolled back by {dag_run.run_id}", log_url=link
                )
        body = comment_body(
            self.service,
            pr,
            headline=f"↩️ rolled back to `{sha[:7]}` (was `{was}`)",
            rows=[
                ("Preview", slot_url),
                ("Commit", f"`{sha[:7]}` (`{sha}`), revision `{rolled.get('revision')}`"),
                ("Run", f"[{dag_run.run_id}]({link})"),
            ],
        )
        comment_id, _ = hook.upsert_comment(pr, _marker(self.service), body)
        self.log.info(
            "Reported the rollback to %s: deployment %s, comment %s", target.repo, deployment, comment_id
        )
        return {"deployment_id": deployment, "comment_id": comment_id}
