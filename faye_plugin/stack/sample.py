"""The sample service ``hello``: a local git repository with a Dockerfile on the local base image.

``$FAYE_HOME/sample/hello`` has two commits on ``main`` (fixed author and dates, so the shas are the
same on every machine) and a branch ``broken`` whose Dockerfile COPYs a file that does not exist, for
build-failure tests. The image serves, with busybox httpd on ``$PORT`` (default 8080), a page that
contains the git sha it was built from (``ARG GIT_SHA``) and ``$GREETING``; ``/healthz`` answers ``ok``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from faye_plugin.exceptions import StackError

DOCKERFILE = """\
FROM localhost/faye-base:latest
ARG GIT_SHA=unknown
ENV GIT_SHA=$GIT_SHA PORT=8080 GREETING=hello
COPY serve.sh /serve.sh
EXPOSE 8080
CMD ["/bin/sh", "/serve.sh"]
"""

SERVE_V1 = """\
#!/bin/sh
# hello: answer on $PORT with the git sha this image was built from.
set -e
mkdir -p /tmp/www
printf '<html><body><h1>%s</h1><p>built from %s</p></body></html>\\n' "$GREETING" "$GIT_SHA" \\
  > /tmp/www/index.html
exec httpd -f -p "0.0.0.0:${PORT:-8080}" -h /tmp/www
"""

SERVE_V2 = SERVE_V1.replace(
    "exec httpd",
    'echo "ok $GIT_SHA" > /tmp/www/healthz\necho "hello: serving $GIT_SHA on ${PORT:-8080}"\nexec httpd',
)

README = "# hello\n\nfaye's sample service: `GET /` shows the git sha the image was built from.\n"

BROKEN_DOCKERFILE = DOCKERFILE.replace("COPY serve.sh /serve.sh", "COPY missing-file /missing-file")

_ENV = {
    "GIT_AUTHOR_NAME": "faye",
    "GIT_AUTHOR_EMAIL": "faye@localhost",
    "GIT_COMMITTER_NAME": "faye",
    "GIT_COMMITTER_EMAIL": "faye@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def _git(repo: Path, *args: str, date: str | None = None) -> str:
    env = {**os.environ, **_ENV}
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    proc = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StackError(f"git {' '.join(args)} in {repo} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def ensure(repo: Path) -> bool:
    """Create the hello repository unless it exists; return True when it was created."""
    if (repo / ".git").is_dir():
        return False
    tmp = repo.with_name(repo.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    _git(tmp, "init", "-q", "-b", "main")
    (tmp / "Dockerfile").write_text(DOCKERFILE)
    (tmp / "serve.sh").write_text(SERVE_V1)
    (tmp / "README.md").write_text(README)
    _git(tmp, "add", "Dockerfile", "serve.sh", "README.md")
    _git(tmp, "commit", "-q", "-m", "hello: serve the build's git sha", date="2026-01-01T10:00:00Z")
    (tmp / "serve.sh").write_text(SERVE_V2)
    _git(tmp, "commit", "-q", "-am", "hello: add /healthz and a start-up line", date="2026-01-02T10:00:00Z")
    _git(tmp, "checkout", "-q", "-b", "broken")
    (tmp / "Dockerfile").write_text(BROKEN_DOCKERFILE)
    _git(tmp, "commit", "-q", "-am", "broken: COPY a file that does not exist", date="2026-01-03T10:00:00Z")
    _git(tmp, "checkout", "-q", "main")
    tmp.rename(repo)
    return True


def head(repo: Path, ref: str = "HEAD") -> str:
    """Return the full sha of ``ref`` in ``repo``."""
    return _git(repo, "rev-parse", ref)
