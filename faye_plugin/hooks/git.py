"""The service's source: fetch one commit from a git remote and pack a build context from it.

A thin wrapper around the ``git`` command (anything ``git clone`` takes as a URL works: a path, file://,
https://, ssh). Only the asked-for commit is fetched (``--depth 1``) when the sha is a full one; a
short sha needs the branch heads to be fetched to be resolved.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from faye_plugin.exceptions import BuildFailedError

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


class GitSourceHook:
    """Fetch commits of one repository into a local work tree and archive them.

    :param git_url: the remote (from the catalogue's ``build.git_url``).
    :param timeout: seconds for each git command.
    """

    hook_name = "faye: git source"

    def __init__(self, git_url: str, timeout: float = 300.0) -> None:
        self.git_url = git_url
        self.timeout = timeout

    def _git(self, workdir: Path, *args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(workdir), *args],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise BuildFailedError(f"git {args[0]} timed out after {self.timeout:.0f}s") from err
        if done.returncode != 0:
            raise BuildFailedError(f"git {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def fetch(self, git_sha: str, workdir: Path) -> str:
        """Fetch ``git_sha`` of the remote into a fresh repository at ``workdir``; return the full sha."""
        workdir.mkdir(parents=True, exist_ok=True)
        self._git(workdir, "init", "--quiet")
        fetched = False
        if FULL_SHA.match(git_sha):
            try:
                self._git(workdir, "fetch", "--quiet", "--depth", "1", self.git_url, git_sha)
                fetched = True
            except BuildFailedError:
                fetched = False  # the remote refuses sha wants: fall back to its branches
        if not fetched:
            self._git(workdir, "fetch", "--quiet", "--tags", self.git_url, "+refs/heads/*:refs/remotes/src/*")
        try:
            return self._git(workdir, "rev-parse", "--verify", "--quiet", f"{git_sha}^{{commit}}").strip()
        except BuildFailedError:
            raise BuildFailedError(f"commit {git_sha} not found in {self.git_url}") from None

    def resolve(self, git_sha: str) -> str:
        """Return the full 40-hex sha of ``git_sha`` (a full sha is returned as it is, without I/O)."""
        if FULL_SHA.match(git_sha):
            return git_sha
        from tempfile import TemporaryDirectory

        with TemporaryDirectory(prefix="faye-git-") as tmp:
            return self.fetch(git_sha, Path(tmp) / "src")

    def archive(self, workdir: Path, full_sha: str, context: str, dest: Path) -> Path:
        """Write the tree of ``full_sha`` under ``context`` (``.`` for the root) as a tar to ``dest``."""
        sub = context.strip("/")
        treeish = full_sha if sub in ("", ".") else f"{full_sha}:{sub}"
        self._git(workdir, "archive", "--format=tar", "-o", str(dest), treeish)
        return dest
