"""A stateful GitHub REST API double for the local stack (``faye stack up`` starts it).

It answers the few endpoints faye reports through, with GitHub's paths, methods, status codes and JSON
field names (``tests/unit/test_github_double_openapi.py`` checks every route and answer against GitHub's
published OpenAPI description, ``@octokit/openapi``):

- ``GET|PATCH /repos/{owner}/{repo}/pulls/{pull_number}``
- ``GET|POST /repos/{owner}/{repo}/issues/{issue_number}/comments``
- ``GET|PATCH|DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}``
- ``POST /repos/{owner}/{repo}/statuses/{sha}``, ``GET /repos/{owner}/{repo}/commits/{ref}/statuses``
- ``GET|POST /repos/{owner}/{repo}/deployments``, ``GET /repos/{owner}/{repo}/deployments/{deployment_id}``
- ``GET|POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses``
- ``DELETE /repos/{owner}/{repo}/environments/{environment_name}``

Errors have GitHub's bodies: 401 ``Bad credentials`` (a token is required when the double has one),
404 ``Not Found``, 422 ``Validation Failed`` with ``errors``. Lists page with ``per_page``/``page`` and a
``Link`` header. State lives in memory and in ``<state dir>/state.json`` (kept across ``down``/``up``).

Test-only endpoints (not GitHub's), under ``/_double/``: ``GET health``, ``POST repos`` ``{"full_name"}``,
``POST pulls`` ``{"repo", "number"?, "head_sha", "head_ref"?, "base_ref"?, "title"?}`` (opens a pull
request, or moves an open one's head), ``GET state`` (everything), ``POST faults`` ``{"route": "POST
/repos/{owner}/{repo}/deployments" or "*", "status": 500, "count": 1}`` (the next ``count`` calls of
that route answer ``status``), ``DELETE faults``, ``GET requests`` (the last API requests received:
method, route, body; for tests that check what a client sent), ``POST push`` ``{"repo", "ref", "sha"}``
(a push to a branch: its open pull requests move there), ``GET deliveries`` (the webhooks sent). With a
webhook URL (``--webhook-url``; the local stack: faye's), opening, closing, reopening a pull request and
a push to its branch deliver GitHub's signed ``pull_request`` events (``stack/github_webhooks.py``);
``POST pulls`` with ``"deliver": false`` changes the state without one.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from faye_plugin.stack.github_webhooks import WEBHOOK_SECRET_ENV, WebhookSender

DOCS = "https://docs.github.com/rest"
BOT_LOGIN = "faye-double[bot]"
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
COMMIT_STATES = ("error", "failure", "pending", "success")
MAX_REQUESTS_KEPT = 200
TOKEN_ENV = "FAYE_GITHUB_DOUBLE_TOKEN"


class ApiError(Exception):
    """An answer of GitHub's error shape."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "documentation_url": DOCS}
        if self.errors is not None:
            out["errors"] = self.errors  # a validation error (GitHub's description names no status here)
        else:
            out["status"] = str(self.status)
        return out


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(resource: str, field: str, code: str = "invalid") -> ApiError:
    return ApiError(422, "Validation Failed", [{"resource": resource, "code": code, "field": field}])


class GithubState:
    """The double's state: repositories, pull requests, comments, statuses, deployments, environments."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.data: dict[str, Any] = {"next_id": 1000, "repos": {}}
        if path is not None and path.exists():
            self.data = json.loads(path.read_text())

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)

    def new_id(self) -> int:
        self.data["next_id"] += 1
        return int(self.data["next_id"])

    def add_repo(self, full_name: str) -> dict[str, Any]:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", full_name):
            raise _invalid("Repository", "full_name")
        repos = self.data["repos"]
        if full_name not in repos:
            repos[full_name] = {
                "id": self.new_id(),
                "created_at": _now(),
                "pulls": {},
                "comments": {},
                "statuses": [],
                "deployments": {},
                "environments": {},
            }
        return dict(repos[full_name])

    def repo(self, owner: str, name: str) -> dict[str, Any]:
        try:
            return dict(self.data["repos"][f"{owner}/{name}"])
        except KeyError:
            raise ApiError(404, "Not Found") from None


class Double:
    """Routing and GitHub's JSON shapes over :class:`GithubState`; served by :func:`make_server`."""

    def __init__(
        self,
        state: GithubState,
        base_url: str,
        token: str | None = None,
        *,
        any_pull: bool = False,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.state = state
        # pull_request events to one webhook (the local stack: faye's), or none
        self.webhooks = webhooks
        # the local stack's convenience: a PR number nobody opened exists (opened on first use), so
        # every deploy of the sample service can comment; GitHub (and the default) answers 404
        self.any_pull = any_pull
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.faults: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.routes: list[tuple[str, str, re.Pattern[str], Callable[..., tuple[int, Any]]]] = []
        for method, template, handler in (
            ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", self.get_pull),
            ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}", self.update_pull),
            ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", self.list_comments),
            ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", self.create_comment),
            ("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}", self.get_comment),
            ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", self.update_comment),
            ("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}", self.delete_comment),
            ("POST", "/repos/{owner}/{repo}/statuses/{sha}", self.create_status),
            ("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses", self.list_statuses),
            ("GET", "/repos/{owner}/{repo}/deployments", self.list_deployments),
            ("POST", "/repos/{owner}/{repo}/deployments", self.create_deployment),
            ("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}", self.get_deployment),
            (
                "GET",
                "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
                self.list_deployment_statuses,
            ),
            (
                "POST",
                "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
                self.create_deployment_status,
            ),
            ("DELETE", "/repos/{owner}/{repo}/environments/{environment_name}", self.delete_environment),
        ):
            pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template))
            self.routes.append((method, template, re.compile(f"^{pattern}$"), handler))

    # --- the shapes -----------------------------------------------------------------------------
    def user(self) -> dict[str, Any]:
        u = f"{self.base_url}/users/{quote(BOT_LOGIN)}"
        return {
            "login": BOT_LOGIN,
            "id": 1,
            "node_id": "BOT_1",
            "avatar_url": f"{self.base_url}/avatars/1",
            "gravatar_id": "",
            "url": u,
            "html_url": f"{self.base_url}/apps/faye-double",
            "followers_url": f"{u}/followers",
            "following_url": f"{u}/following{{/other_user}}",
            "gists_url": f"{u}/gists{{/gist_id}}",
            "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{u}/subscriptions",
            "organizations_url": f"{u}/orgs",
            "repos_url": f"{u}/repos",
            "events_url": f"{u}/events{{/privacy}}",
            "received_events_url": f"{u}/received_events",
            "type": "Bot",
            "site_admin": False,
        }

    def repo_url(self, full_name: str) -> str:
        return f"{self.base_url}/repos/{full_name}"

    def repository(self, full_name: str, repo: dict[str, Any]) -> dict[str, Any]:
        owner, name = full_name.split("/", 1)
        url = self.repo_url(full_name)
        html = f"{self.base_url}/{full_name}"
        owner_user = {**self.user(), "login": owner, "type": "Organization", "id": 2, "node_id": "ORG_2"}
        templated = {
            "archive_url": "/{archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "contributors_url": "/contributors",
            "deployments_url": "/deployments",
            "downloads_url": "/downloads",
            "events_url": "/events",
            "forks_url": "/forks",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "hooks_url": "/hooks",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "languages_url": "/languages",
            "merges_url": "/merges",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "stargazers_url": "/stargazers",
            "statuses_url": "/statuses/{sha}",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "tags_url": "/tags",
            "teams_url": "/teams",
            "trees_url": "/git/trees{/sha}",
        }
        opened = sum(1 for p in repo["pulls"].values() if p["state"] == "open")
        return {
            "id": repo["id"],
            "node_id": f"R_{repo['id']}",
            "name": name,
            "full_name": full_name,
            "owner": owner_user,
            "private": False,
            "html_url": html,
            "description": None,
            "fork": False,
            "topics": [],
            "visibility": "public",
            "has_discussions": False,
            "url": url,
            **{key: url + suffix for key, suffix in templated.items()},
            "git_url": f"{html}.git",
            "ssh_url": f"{html}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "mirror_url": None,
            "homepage": None,
            "language": None,
            "forks": 0,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "size": 0,
            "default_branch": "main",
            "open_issues": opened,
            "open_issues_count": opened,
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": False,
            "archived": False,
            "disabled": False,
            "license": None,
            "pushed_at": repo["created_at"],
            "created_at": repo["created_at"],
            "updated_at": repo["created_at"],
        }

    def pull(self, full_name: str, repo: dict[str, Any], pr: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.repo_url(full_name)}/pulls/{pr['number']}"
        issue = f"{self.repo_url(full_name)}/issues/{pr['number']}"
        html = f"{self.base_url}/{full_name}/pull/{pr['number']}"
        owner = full_name.split("/", maxsplit=1)[0]
        repository = self.repository(full_name, repo)

        def side(ref: str, sha: str) -> dict[str, Any]:
            return {
                "label": f"{owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "user": repository["owner"],
                "repo": repository,
            }

        statuses = f"{self.repo_url(full_name)}/statuses/{pr['head_sha']}"
        links = {
            "self": url,
            "html": html,
            "issue": issue,
            "comments": f"{issue}/comments",
            "review_comments": f"{url}/comments",
            "review_comment": f"{self.repo_url(full_name)}/pulls/comments{{/number}}",
            "commits": f"{url}/commits",
            "statuses": statuses,
        }
        comments = sum(1 for c in repo["comments"].values() if c["issue_number"] == pr["number"])
        return {
            "url": url,
            "id": pr["id"],
            "node_id": f"PR_{pr['id']}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": issue,
            "commits_url": f"{url}/commits",
            "review_comments_url": f"{url}/comments",
            "review_comment_url": links["review_comment"],
            "comments_url": f"{issue}/comments",
            "statuses_url": statuses,
            "number": pr["number"],
            "state": pr["state"],
            "locked": False,
            "title": pr["title"],
            "user": self.user(),
            "body": None,
            "labels": [],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": pr["created_at"],
            "updated_at": pr["updated_at"],
            "closed_at": pr["closed_at"],
            "merged_at": None,
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": side(pr["head_ref"], pr["head_sha"]),
            "base": side(pr["base_ref"], pr["base_sha"]),
            "_links": {k: {"href": v} for k, v in links.items()},
            "author_association": "NONE",
            "auto_merge": None,
            "draft": False,
            "merged": False,
            "mergeable": None,
            "rebaseable": None,
            "mergeable_state": "unknown",
            "merged_by": None,
            "comments": comments,
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": 0,
            "deletions": 0,
            "changed_files": 0,
        }

    def comment(self, full_name: str, c: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": c["id"],
            "node_id": f"IC_{c['id']}",
            "url": f"{self.repo_url(full_name)}/issues/comments/{c['id']}",
            "html_url": f"{self.base_url}/{full_name}/pull/{c['issue_number']}#issuecomment-{c['id']}",
            "issue_url": f"{self.repo_url(full_name)}/issues/{c['issue_number']}",
            "body": c["body"],
            "user": self.user(),
            "created_at": c["created_at"],
            "updated_at": c["updated_at"],
            "author_association": "NONE",
        }

    def commit_status(self, full_name: str, s: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"{self.repo_url(full_name)}/statuses/{s['sha']}",
            "avatar_url": None,
            "id": s["id"],
            "node_id": f"SC_{s['id']}",
            "state": s["state"],
            "description": s["description"],
            "target_url": s["target_url"],
            "context": s["context"],
            "created_at": s["created_at"],
            "updated_at": s["created_at"],
            "creator": self.user(),
        }

    def deployment(self, full_name: str, d: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.repo_url(full_name)}/deployments/{d['id']}"
        return {
            "url": url,
            "id": d["id"],
            "node_id": f"DE_{d['id']}",
            "sha": d["sha"],
            "ref": d["ref"],
            "task": d["task"],
            "payload": d["payload"],
            "original_environment": d["original_environment"],
            "environment": d["environment"],
            "description": d["description"],
            "creator": self.user(),
            "created_at": d["created_at"],
            "updated_at": d["updated_at"],
            "statuses_url": f"{url}/statuses",
            "repository_url": self.repo_url(full_name),
            "transient_environment": d["transient_environment"],
            "production_environment": d["production_environment"],
        }

    def deployment_status(self, full_name: str, d: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
        deployment_url = f"{self.repo_url(full_name)}/deployments/{d['id']}"
        return {
            "url": f"{deployment_url}/statuses/{s['id']}",
            "id": s["id"],
            "node_id": f"DES_{s['id']}",
            "state": s["state"],
            "creator": self.user(),
            "description": s["description"],
            "environment": s["environment"],
            "target_url": s["log_url"],
            "log_url": s["log_url"],
            "environment_url": s["environment_url"],
            "created_at": s["created_at"],
            "updated_at": s["created_at"],
            "deployment_url": deployment_url,
            "repository_url": self.repo_url(full_name),
        }

    # --- the endpoints --------------------------------------------------------------------------
    def _pull(self, repo: dict[str, Any], number: str) -> dict[str, Any]:
        self._issue_exists(repo, number)
        return dict(repo["pulls"][str(number)])

    def get_pull(self, owner: str, repo: str, pull_number: str, **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        return 200, self.pull(f"{owner}/{repo}", data, self._pull(data, pull_number))

    def update_pull(self, owner: str, repo: str, pull_number: str, body: Any, **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        pr = data["pulls"].get(str(pull_number))
        if pr is None:
            raise ApiError(404, "Not Found")
        was = pr["state"]
        if "state" in body:
            if body["state"] not in ("open", "closed"):
                raise _invalid("PullRequest", "state")
            pr["state"] = body["state"]
            pr["closed_at"] = _now() if body["state"] == "closed" else None
        if "title" in body:
            pr["title"] = str(body["title"])
        pr["updated_at"] = _now()
        if pr["state"] != was:
            self.deliver("closed" if pr["state"] == "closed" else "reopened", f"{owner}/{repo}", data, pr)
        return 200, self.pull(f"{owner}/{repo}", data, pr)

    def _issue_exists(self, data: dict[str, Any], number: str) -> None:
        if str(number) in data["pulls"]:
            return
        if not self.any_pull or not number.isdigit() or int(number) < 1:
            raise ApiError(404, "Not Found")
        # opened on first use: its head is the newest commit deployed for it, if any. Quietly: it stands
        # for a PR that was open before faye heard of it, so no webhook (it would deploy the PR again).
        shas = [d["sha"] for d in data["deployments"].values() if d["environment"].endswith(f"/pr-{number}")]
        full_name = next(n for n, r in self.state.data["repos"].items() if r["pulls"] is data["pulls"])
        head = shas[-1] if shas else "0" * 40
        self.open_pull({"repo": full_name, "number": int(number), "head_sha": head, "deliver": False})

    def list_comments(self, owner: str, repo: str, issue_number: str, **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        self._issue_exists(data, issue_number)
        found = [c for c in data["comments"].values() if c["issue_number"] == int(issue_number)]
        return 200, [self.comment(f"{owner}/{repo}", c) for c in sorted(found, key=lambda c: c["id"])]

    def create_comment(
        self, owner: str, repo: str, issue_number: str, body: Any, **_: Any
    ) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        self._issue_exists(data, issue_number)
        if not isinstance(body.get("body"), str) or not body["body"]:
            raise _invalid("IssueComment", "body", "missing_field")
        cid = self.state.new_id()
        now = _now()
        comment = {
            "id": cid,
            "issue_number": int(issue_number),
            "body": body["body"],
            "created_at": now,
            "updated_at": now,
        }
        data["comments"][str(cid)] = comment
        return 201, self.comment(f"{owner}/{repo}", comment)

    def _comment(self, data: dict[str, Any], comment_id: str) -> dict[str, Any]:
        found = data["comments"].get(str(comment_id))
        if found is None:
            raise ApiError(404, "Not Found")
        return dict(found)

    def get_comment(self, owner: str, repo: str, comment_id: str, **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        return 200, self.comment(f"{owner}/{repo}", self._comment(data, comment_id))

    def update_comment(self, owner: str, repo: str, comment_id: str, body: Any, **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        comment = data["comments"].get(str(comment_id))
        if comment is None:
            raise ApiError(404, "Not Found")
        if not isinstance(body.get("body"), str) or not body["body"]:
            raise _invalid("IssueComment", "body", "missing_field")
        comment["body"] = body["body"]
        comment["updated_at"] = _now()
        return 200, self.comment(f"{owner}/{repo}", comment)

    def delete_comment(self, owner: str, repo: str, comment_id: str, **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        self._comment(data, comment_id)
        del data["comments"][str(comment_id)]
        return 204, None

    def create_status(self, owner: str, repo: str, sha: str, body: Any, **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise _invalid("Status", "sha")
        if body.get("state") not in COMMIT_STATES:
            raise _invalid("Status", "state")
        status = {
            "id": self.state.new_id(),
            "sha": sha,
            "state": body["state"],
            "target_url": body.get("target_url"),
            "description": body.get("description"),
            "context": str(body.get("context") or "default"),
            "created_at": _now(),
        }
        data["statuses"].append(status)
        return 201, self.commit_status(f"{owner}/{repo}", status)

    def list_statuses(self, owner: str, repo: str, ref: str, **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        found = [s for s in data["statuses"] if s["sha"] == ref]
        # newest first, as GitHub lists them
        return 200, [self.commit_status(f"{owner}/{repo}", s) for s in reversed(found)]

    def list_deployments(self, owner: str, repo: str, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        found = [
            d
            for d in data["deployments"].values()
            if all(d.get(k) == query[k] for k in ("sha", "ref", "task", "environment") if k in query)
        ]
        found.sort(key=lambda d: -d["id"])  # newest first
        return 200, [self.deployment(f"{owner}/{repo}", d) for d in found]

    def create_deployment(self, owner: str, repo: str, body: Any, **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        ref = body.get("ref")
        if not isinstance(ref, str) or not ref:
            raise _invalid("Deployment", "ref", "missing_field")
        sha = ref if re.fullmatch(r"[0-9a-f]{40}", ref) else None
        if sha is None:
            heads = [p["head_sha"] for p in data["pulls"].values() if p["head_ref"] == ref]
            if not heads:
                raise ApiError(422, f"No ref found for: {ref}")
            sha = heads[-1]
        for key, kind in (
            ("transient_environment", bool),
            ("production_environment", bool),
            ("auto_merge", bool),
        ):
            if key in body and not isinstance(body[key], kind):
                raise _invalid("Deployment", key)
        contexts = body.get("required_contexts")
        if contexts is not None and not isinstance(contexts, list):
            raise _invalid("Deployment", "required_contexts")
        environment = str(body.get("environment") or "production")
        now = _now()
        deployment = {
            "id": self.state.new_id(),
            "sha": sha,
            "ref": ref,
            "task": str(body.get("task") or "deploy"),
            "payload": body.get("payload") if body.get("payload") is not None else {},
            "environment": environment,
            "original_environment": environment,
            "description": body.get("description") or "",
            "transient_environment": bool(body.get("transient_environment", False)),
            "production_environment": bool(body.get("production_environment", environment == "production")),
            "created_at": now,
            "updated_at": now,
            "statuses": [],
        }
        data["deployments"][str(deployment["id"])] = deployment
        data["environments"].setdefault(environment, {"created_at": now})
        return 201, self.deployment(f"{owner}/{repo}", deployment)

    def _deployment(self, data: dict[str, Any], deployment_id: str) -> dict[str, Any]:
        found = data["deployments"].get(str(deployment_id))
        if found is None:
            raise ApiError(404, "Not Found")
        return dict(found)

    def get_deployment(self, owner: str, repo: str, deployment_id: str, **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        return 200, self.deployment(f"{owner}/{repo}", self._deployment(data, deployment_id))

    def list_deployment_statuses(
        self, owner: str, repo: str, deployment_id: str, **_: Any
    ) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        d = self._deployment(data, deployment_id)
        return 200, [self.deployment_status(f"{owner}/{repo}", d, s) for s in reversed(d["statuses"])]

    def create_deployment_status(
        self, owner: str, repo: str, deployment_id: str, body: Any, **_: Any
    ) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        d = data["deployments"].get(str(deployment_id))
        if d is None:
            raise ApiError(404, "Not Found")
        if body.get("state") not in DEPLOYMENT_STATES:
            raise _invalid("DeploymentStatus", "state")
        status = {
            "id": self.state.new_id(),
            "state": body["state"],
            "description": str(body.get("description") or ""),
            "log_url": str(body.get("log_url") or body.get("target_url") or ""),
            "environment_url": str(body.get("environment_url") or ""),
            "environment": str(body.get("environment") or d["environment"]),
            "created_at": _now(),
        }
        d["statuses"].append(status)
        d["updated_at"] = status["created_at"]
        if status["state"] == "success" and body.get("auto_inactive", True):
            # GitHub: earlier deployments of the same environment that had succeeded become inactive.
            for other in data["deployments"].values():
                states = [s["state"] for s in other["statuses"]]
                if (
                    other["id"] < d["id"]
                    and other["environment"] == d["environment"]
                    and states
                    and states[-1] == "success"
                ):
                    other["statuses"].append({**status, "id": self.state.new_id(), "state": "inactive"})
        return 201, self.deployment_status(f"{owner}/{repo}", d, status)

    def delete_environment(self, owner: str, repo: str, environment_name: str, **_: Any) -> tuple[int, Any]:
        data = self.state.repo(owner, repo)
        name = unquote(environment_name)
        if name not in data["environments"]:
            raise ApiError(404, "Not Found")
        del data["environments"][name]
        for d in [d for d in data["deployments"].values() if d["environment"] == name]:
            del data["deployments"][str(d["id"])]
        return 204, None

    # --- test-only ------------------------------------------------------------------------------
    def open_pull(self, body: Any) -> tuple[int, Any]:
        full_name = str(body.get("repo") or "")
        head_sha = str(body.get("head_sha") or "")
        if not re.fullmatch(r"[0-9a-f]{40}", head_sha):
            raise _invalid("PullRequest", "head_sha")
        self.state.add_repo(full_name)
        data = self.state.data["repos"][full_name]
        number = int(body.get("number") or 1 + max((int(n) for n in data["pulls"]), default=0))
        now = _now()
        pr = data["pulls"].get(str(number))
        before = "" if pr is None else str(pr["head_sha"])
        action = (
            "opened"
            if pr is None
            else "reopened"
            if pr["state"] == "closed"
            else "synchronize"
            if pr["head_sha"] != head_sha
            else ""
        )
        if pr is None:
            pr = {
                "id": self.state.new_id(),
                "number": number,
                "title": str(body.get("title") or f"PR {number}"),
                "head_ref": str(body.get("head_ref") or f"pr-{number}"),
                "base_ref": str(body.get("base_ref") or "main"),
                "base_sha": str(body.get("base_sha") or head_sha),
                "created_at": now,
                "closed_at": None,
            }
            data["pulls"][str(number)] = pr
        pr.update(head_sha=head_sha, state="open", updated_at=now, closed_at=None)
        if action and body.get("deliver", True):
            self.deliver(action, full_name, data, pr, before)
        return 201, self.pull(full_name, data, pr)

    def push(self, body: Any) -> tuple[int, Any]:
        """A push of ``sha`` to branch ``ref``: each open pull request from that branch moves its head
        there, and GitHub sends ``synchronize`` for it."""
        full_name, ref, sha = (str(body.get(k) or "") for k in ("repo", "ref", "sha"))
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise _invalid("Push", "sha")
        data = self.state.repo(*full_name.split("/", 1)) if "/" in full_name else None
        if data is None:
            raise ApiError(404, "Not Found")
        ref = ref.removeprefix("refs/heads/")
        moved = []
        for pr in data["pulls"].values():
            if pr["state"] == "open" and pr["head_ref"] == ref and pr["head_sha"] != sha:
                before = pr["head_sha"]
                pr.update(head_sha=sha, updated_at=_now())
                self.deliver("synchronize", full_name, data, pr, before)
                moved.append(pr["number"])
        return 200, {"pulls": moved}

    def deliver(
        self, action: str, full_name: str, data: dict[str, Any], pr: dict[str, Any], before: str = ""
    ) -> None:
        """Send the ``pull_request`` event of ``action`` to the webhook, if one is set (``before``: the
        head a ``synchronize`` moved from)."""
        if self.webhooks is None:
            return
        payload: dict[str, Any] = {"action": action, "number": pr["number"]}
        if action == "synchronize":
            payload |= {"before": before, "after": pr["head_sha"]}
        payload |= {
            "pull_request": self.pull(full_name, data, pr),
            "repository": self.repository(full_name, data),
            "sender": self.user(),
        }
        self.webhooks.send("pull_request", payload)

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for full_name, repo in self.state.data["repos"].items():
            out[full_name] = {
                "pulls": [self.pull(full_name, repo, p) for p in repo["pulls"].values()],
                "comments": [self.comment(full_name, c) for c in repo["comments"].values()],
                "statuses": [self.commit_status(full_name, s) for s in repo["statuses"]],
                "deployments": [
                    {
                        **self.deployment(full_name, d),
                        "statuses": [
                            self.deployment_status(full_name, d, s) for s in reversed(d["statuses"])
                        ],
                    }
                    for d in repo["deployments"].values()
                ],
                "environments": sorted(repo["environments"]),
            }
        return out

    # --- dispatch -------------------------------------------------------------------------------
    def authorised(self, header: str | None) -> bool:
        if not self.token:
            return True
        if not header or " " not in header:
            return False
        scheme, _, value = header.partition(" ")
        return scheme.lower() in ("token", "bearer") and hmac.compare_digest(value.strip(), self.token)

    def handle(
        self, method: str, raw_path: str, body: Any, auth: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        """Answer one request: (status, JSON body or None, extra headers)."""
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.state.lock:
            try:
                if path.startswith("/_double/"):
                    return (*self.handle_double(method, path, body), {})
                for route_method, template, pattern, handler in self.routes:
                    match = pattern.match(path)
                    if not match or route_method != method:
                        continue
                    self.requests.append({"method": method, "route": template, "path": path, "body": body})
                    del self.requests[:-MAX_REQUESTS_KEPT]
                    if not self.authorised(auth):
                        raise ApiError(401, "Bad credentials")
                    self.take_fault(f"{method} {template}")
                    if method in ("POST", "PATCH") and not isinstance(body, dict):
                        raise ApiError(400, "Problems parsing JSON")
                    status, answer = handler(**match.groupdict(), body=body, query=query)
                    if method != "GET":
                        self.state.save()
                    if isinstance(answer, list):
                        return self.page(status, answer, path, query)
                    return status, answer, {}
                raise ApiError(404, "Not Found")
            except ApiError as err:
                return err.status, err.body(), {}

    def page(
        self, status: int, items: list[Any], path: str, query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        try:
            per_page = max(1, min(100, int(query.get("per_page", 30))))
            number = max(1, int(query.get("page", 1)))
        except ValueError:
            raise ApiError(422, "Validation Failed") from None
        last = max(1, -(-len(items) // per_page))
        links = []
        if number < last:
            links.append(f'<{self.base_url}{path}?per_page={per_page}&page={number + 1}>; rel="next"')
            links.append(f'<{self.base_url}{path}?per_page={per_page}&page={last}>; rel="last"')
        headers = {"Link": ", ".join(links)} if links else {}
        return status, items[(number - 1) * per_page : number * per_page], headers

    def take_fault(self, route: str) -> None:
        for fault in self.faults:
            if fault["route"] in ("*", route) and fault["count"] > 0:
                fault["count"] -= 1
                self.faults = [f for f in self.faults if f["count"] > 0]
                status = int(fault["status"])
                raise ApiError(status, HTTPStatus(status).phrase + " (injected fault)")

    def handle_double(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if (method, path) == ("GET", "/_double/health"):
            return 200, {"ok": True}
        if (method, path) == ("GET", "/_double/state"):
            return 200, self.dump()
        if (method, path) == ("GET", "/_double/requests"):
            return 200, list(self.requests)
        if (method, path) == ("POST", "/_double/repos"):
            repo = self.state.add_repo(str((body or {}).get("full_name") or ""))
            self.state.save()
            return 201, {"id": repo["id"]}
        if (method, path) == ("POST", "/_double/pulls"):
            answer = self.open_pull(body or {})
            self.state.save()
            return answer
        if (method, path) == ("POST", "/_double/push"):
            answer = self.push(body or {})
            self.state.save()
            return answer
        if (method, path) == ("GET", "/_double/deliveries"):
            return 200, self.webhooks.listing() if self.webhooks else []
        if (method, path) == ("POST", "/_double/faults"):
            route, status, count = body.get("route"), body.get("status"), body.get("count", 1)
            if not isinstance(route, str) or not isinstance(status, int) or not isinstance(count, int):
                raise ApiError(400, "a fault is {route, status, count}")
            self.faults.append({"route": route, "status": status, "count": count})
            return 201, {"faults": self.faults}
        if (method, path) == ("DELETE", "/_double/faults"):
            self.faults = []
            return 204, None
        raise ApiError(404, "Not Found")


class _Handler(BaseHTTPRequestHandler):
    double: Double
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = "<not json>"
        status, answer, headers = self.double.handle(
            self.command, self.path, body, self.headers.get("Authorization")
        )
        data = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        if answer is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve  # noqa: N815 (http.server's names)


def make_server(
    host: str,
    port: int,
    state: GithubState,
    token: str | None = None,
    base_url: str | None = None,
    *,
    any_pull: bool = False,
    webhooks: WebhookSender | None = None,
) -> ThreadingHTTPServer:
    """A server (not started) answering as the double; ``port`` 0 picks a free port."""
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    url = base_url or f"http://{host}:{server.server_address[1]}"
    double = Double(state, url, token, any_pull=any_pull, webhooks=webhooks)
    handler = type("Handler", (_Handler,), {"double": double})
    server.RequestHandlerClass = handler
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="faye's GitHub REST API double")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--repo", action="append", default=[], help="owner/name to create (repeatable)")
    parser.add_argument(
        "--any-pull", action="store_true", help="a PR number nobody opened exists (opened on first use)"
    )
    parser.add_argument(
        "--webhook-url", help=f"deliver pull_request events there, signed with ${WEBHOOK_SECRET_ENV}"
    )
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    state = GithubState(args.state_dir / "state.json")
    for full_name in args.repo:
        state.add_repo(full_name)
    state.save()
    token = os.environ.get(TOKEN_ENV) or None
    secret = os.environ.get(WEBHOOK_SECRET_ENV, "")
    webhooks = WebhookSender(args.webhook_url, secret) if args.webhook_url and secret else None
    server = make_server(args.host, args.port, state, token=token, any_pull=args.any_pull, webhooks=webhooks)
    server.serve_forever()


if __name__ == "__main__":
    main()
