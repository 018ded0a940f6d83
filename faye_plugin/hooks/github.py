"""The GitHub hook: what faye tells a pull request (deployments, commit statuses, one sticky comment).

The connection is read by the github provider's ``GithubHook`` (token, or a GitHub App's key and
installation; ``host`` = the API URL for GitHub Enterprise or the local stack's double), and the
requests go through the PyGithub client it configures. faye rebuilds that client with the same
authentication and base URL but **PyGithub's own retries off** (``retry=None``): faye has one retry
mechanism (:mod:`faye_plugin.retries`), which tries again only the transient errors named here
(unreachable, timed out, 429, 500, 502, 503, 504), each whole operation at once (a find-or-create is
retried as a whole, so a resend never makes a second deployment or comment). The connection extra
``seconds_between_writes`` keeps PyGithub's spacing of writes (default 1 s, GitHub's advice against its
secondary rate limit; the local stack's double sets 0). Extra ``timeout`` (seconds, default 15).

A 401 (bad token) or 404 (unknown repository, or one the token cannot see) is a
:class:`~faye_plugin.exceptions.GithubReportError` naming the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from airflow.sdk import BaseHook

from faye_plugin.exceptions import GithubReportError
from faye_plugin.retries import DEFAULT_POLICY, RetryPolicy

if TYPE_CHECKING:
    from github import Github
    from github.Repository import Repository

T = TypeVar("T")
log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (requests.ConnectionError, requests.Timeout)
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
DEPLOYMENT_STATES = ("in_progress", "success", "failure", "error", "inactive", "queued", "pending")
COMMIT_STATES = ("pending", "success", "failure", "error")
DESCRIPTION_MAX = 140  # GitHub refuses longer status descriptions (422)


def _status_of(err: BaseException) -> int | None:
    status = getattr(err, "status", None)
    return status if isinstance(status, int) else None


def transient_github_error(err: BaseException) -> bool:
    """True for a GitHub answer worth sending again: rate limited (429) or a server error (5xx)."""
    from github import GithubException

    return isinstance(err, GithubException) and _status_of(err) in TRANSIENT_STATUSES


def short(text: str, limit: int = DESCRIPTION_MAX) -> str:
    """``text`` on one line, at most ``limit`` characters (GitHub's bound on a status description)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def marker(service: str) -> str:
    """The hidden marker that finds a service's sticky comment again on a pull request."""
    return f"<!-- faye:{service} -->"


@dataclass(frozen=True)
class DeploymentInfo:
    """One GitHub deployment and its newest status (None before the first)."""

    id: int
    sha: str
    environment: str
    state: str | None


class GithubReportHook(BaseHook):
    """Report one repository's previews to GitHub.

    :param repo: ``owner/name``.
    :param github_conn_id: a ``github`` connection (token or GitHub App; ``host``: Enterprise or the double).
    :param policy: the retry policy (faye's one; 3 tries by default).
    """

    conn_name_attr = "github_conn_id"
    default_conn_name = "faye_github"
    conn_type = "github"
    hook_name = "faye: GitHub reports"

    def __init__(
        self, repo: str, github_conn_id: str = default_conn_name, *, policy: RetryPolicy = DEFAULT_POLICY
    ) -> None:
        super().__init__()
        self.repo = repo
        self.github_conn_id = github_conn_id
        self.policy = policy

    # --- connection ---------------------------------------------------------------------------------
    def get_conn(self) -> Github:
        """Return the (cached) PyGithub client."""
        return self.client

    @cached_property
    def client(self) -> Github:
        from airflow.providers.github.hooks.github import GithubHook
        from github import Github

        # GithubHook reads the connection (a token, or a GitHub App's key and installation from the
        # extras; host = the API URL); faye keeps its authentication and base URL.
        try:
            provided = GithubHook(github_conn_id=self.github_conn_id).get_conn()
        except ValueError as err:
            raise GithubReportError(f"connection {self.github_conn_id!r}: {err}") from None
        auth, base_url = provided.requester.auth, provided.requester.base_url
        provided.close()
        extra = self.get_connection(self.github_conn_id).extra_dejson or {}
        try:
            timeout = int(extra.get("timeout", 15))
            between_writes = float(extra.get("seconds_between_writes", 1.0))
        except (TypeError, ValueError):
            raise GithubReportError(
                f"connection {self.github_conn_id!r}: extras timeout and seconds_between_writes "
                "must be numbers"
            ) from None
        return Github(
            auth=auth,
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            retry=None,  # faye_plugin.retries is the one retry mechanism
            seconds_between_requests=None,
            seconds_between_writes=between_writes or None,
        )

    @cached_property
    def repository(self) -> Repository:
        """The repository, lazily (no request until a call)."""
        return self.client.get_repo(self.repo, lazy=True)

    def pull_request_url(self, pr: int) -> str:
        """The pull request's web page, made without a request: ``github.com`` for the public API,
        the host of an Enterprise server's ``/api/v3``, else the API's own base (the local double)."""
        base = str(self.client.requester.base_url).rstrip("/")
        if base == "https://api.github.com":
            web = "https://github.com"
        elif base.endswith("/api/v3"):
            web = base.removesuffix("/api/v3")
        else:
            web = base
        return f"{web}/{self.repo}/pull/{pr}"

    # --- calls --------------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one whole operation under faye's retry policy; name the connection on a refusal."""
        from github import GithubException

        try:
            return self.policy.call(
                fn,
                TRANSIENT_ERRORS,
                transient_error=transient_github_error,
                what=f"GitHub {what}",
                logger=log,
            )
        except GithubException as err:
            status = _status_of(err)
            message = (err.data or {}).get("message") if isinstance(err.data, dict) else err.data
            if status == 401:
                why = f"the token of connection {self.github_conn_id!r} was refused (401 {message})"
            elif status == 404:
                why = (
                    f"repository {self.repo!r} was not found through connection {self.github_conn_id!r} "
                    f"(404: it does not exist or the token cannot see it)"
                )
            else:
                why = f"GitHub answered {status}: {message}"
            raise GithubReportError(f"{what} on {self.repo}: {why}") from None
        except TRANSIENT_ERRORS as err:
            raise GithubReportError(
                f"{what} on {self.repo}: GitHub could not be reached through connection "
                f"{self.github_conn_id!r} ({type(err).__name__})"
            ) from None

    def _deployment_info(self, deployment: Any) -> DeploymentInfo:
        statuses = deployment.get_statuses()
        newest = next(iter(statuses), None)
        return DeploymentInfo(
            id=int(deployment.id),
            sha=str(deployment.sha),
            environment=str(deployment.environment),
            state=None if newest is None else str(newest.state),
        )

    def deployments(self, environment: str) -> list[DeploymentInfo]:
        """Every deployment of ``environment``, newest first, with its newest status."""

        def read() -> list[DeploymentInfo]:
            return [
                self._deployment_info(d) for d in self.repository.get_deployments(environment=environment)
            ]

        return self._call(f"list deployments of {environment}", read)

    def ensure_deployment(
        self, environment: str, sha: str, *, description: str, payload: dict[str, Any]
    ) -> int:
        """Return the id of the deployment of ``sha`` to ``environment``, creating it if there is none.

        A transient, non-production environment (one per preview), merged into nothing
        (``auto_merge`` off) and gated by no status check (``required_contexts`` empty).
        """

        def find_or_create() -> int:
            for found in self.repository.get_deployments(sha=sha, environment=environment):
                return int(found.id)
            created = self.repository.create_deployment(
                ref=sha,
                environment=environment,
                description=short(description),
                payload=payload,
                transient_environment=True,
                production_environment=False,
                auto_merge=False,
                required_contexts=[],
            )
            return int(created.id)

        return self._call(f"deployment of {sha[:7]} to {environment}", find_or_create)

    def create_deployment(
        self, environment: str, sha: str, *, description: str, payload: dict[str, Any], task: str
    ) -> int:
        """Create a new deployment of ``sha`` to ``environment`` (a rollback: the newest deployment of
        the environment must be the commit it serves now, even when that commit was deployed before)."""

        def create() -> int:
            created = self.repository.create_deployment(
                ref=sha,
                task=task,
                environment=environment,
                description=short(description),
                payload=payload,
                transient_environment=True,
                production_environment=False,
                auto_merge=False,
                required_contexts=[],
            )
            return int(created.id)

        # A resend after a lost answer may leave a second deployment of the commit: the caller makes
        # every other deployment of the environment inactive anyway.
        return self._call(f"deployment of {sha[:7]} to {environment}", create)

    def post_deployment_status(
        self,
        deployment_id: int,
        state: str,
        *,
        description: str,
        log_url: str | None = None,
        environment_url: str | None = None,
    ) -> None:
        """Add a status to a deployment (``log_url``: the Airflow run; ``environment_url``: the slot URL)."""
        if state not in DEPLOYMENT_STATES:
            raise ValueError(f"deployment state {state!r} is not one of {', '.join(DEPLOYMENT_STATES)}")
        body: dict[str, Any] = {"state": state, "description": short(description)}
        if log_url:
            body["log_url"] = log_url
        if environment_url:
            body["environment_url"] = environment_url
        url = f"{self.repository.url}/deployments/{deployment_id}/statuses"

        def post() -> None:
            # PyGithub's Deployment.create_status has no log_url: its own requester sends GitHub's fields.
            self.client.requester.requestJsonAndCheck("POST", url, input=body)

        self._call(f"status {state} of deployment {deployment_id}", post)

    def set_commit_status(
        self, sha: str, state: str, *, context: str, description: str, target_url: str | None = None
    ) -> None:
        """Set the commit status ``context`` of ``sha`` (GitHub keeps the newest per context)."""
        from github.Commit import Commit

        if state not in COMMIT_STATES:
            raise ValueError(f"commit state {state!r} is not one of {', '.join(COMMIT_STATES)}")
        commit = Commit(
            self.client.requester,
            attributes={"sha": sha, "url": f"{self.repository.url}/commits/{sha}"},
            completed=False,
        )

        def post() -> None:
            if target_url:
                commit.create_status(
                    state, target_url=target_url, description=short(description), context=context
                )
            else:
                commit.create_status(state, description=short(description), context=context)

        self._call(f"commit status {context} of {sha[:7]}", post)

    def commit_status(self, sha: str, context: str) -> str | None:
        """The newest state of commit status ``context`` on ``sha``, or None."""
        from github.CommitStatus import CommitStatus
        from github.PaginatedList import PaginatedList

        # GitHub's documented route (PyGithub's Commit.get_statuses uses the older /statuses/{sha} alias)
        url = f"{self.repository.url}/commits/{sha}/statuses"

        def read() -> str | None:
            for status in PaginatedList(CommitStatus, self.client.requester, url, None):  # newest first
                if status.context == context:
                    return str(status.state)
            return None

        return self._call(f"commit statuses of {sha[:7]}", read)

    def upsert_comment(self, pr: int, mark: str, body: str) -> tuple[int, bool]:
        """Keep ONE comment holding ``mark`` on PR ``pr``: edit it, or create it; return (id, created).

        ``body`` must contain ``mark``. A second comment with the mark (two writers racing) is deleted.
        """
        written = self._write_comment(pr, mark, body, create=True)
        assert written is not None
        return written

    def update_comment(self, pr: int, mark: str, body: str) -> int | None:
        """Edit the comment holding ``mark`` on PR ``pr`` if there is one; return its id, else None."""
        written = self._write_comment(pr, mark, body, create=False)
        return None if written is None else written[0]

    def _write_comment(self, pr: int, mark: str, body: str, *, create: bool) -> tuple[int, bool] | None:
        if mark not in body:
            raise ValueError("the comment's body must hold its marker")

        def write() -> tuple[int, bool] | None:
            issue = self.repository.get_issue(pr)
            ours = [c for c in issue.get_comments() if mark in (c.body or "")]
            if not ours:
                return (int(issue.create_comment(body).id), True) if create else None
            keep, *extra = sorted(ours, key=lambda c: int(c.id))
            if keep.body != body:
                keep.edit(body)
            for duplicate in extra:
                duplicate.delete()
            return int(keep.id), False

        return self._call(f"comment on PR {pr}", write)

    def test_connection(self) -> tuple[bool, str]:
        """Read the repository's deployments once (the UI's Test button)."""
        try:
            self._call("list deployments", lambda: next(iter(self.repository.get_deployments()), None))
        except GithubReportError as err:
            return False, str(err)
        return True, f"reached {self.repo}"
