"""Idempotent Debian package installs: ``dpkg-query`` first, ``apt-get`` only for what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from faye_plugin.exceptions import StackError

# What the stack runs; apt pulls their dependencies and recommends (conmon, catatonit, ...),
# as in the set-up that was checked on these machines.
STACK_PACKAGES = ("podman", "runc", "docker-registry", "caddy", "busybox-static", "git")


def missing(packages: Sequence[str]) -> list[str]:
    """Return the packages of ``packages`` that dpkg does not have installed."""
    if not packages:
        return []
    if shutil.which("dpkg-query") is None:
        return list(packages)
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    installed = {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}
    return [p for p in packages if p not in installed]


def _apt(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Another apt-get (a second stack, unattended upgrades) may hold dpkg's lock: wait for it.
    return subprocess.run(
        ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def _last_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E:")]
    return (errors or lines or ["no output"])[0]


def ensure(packages: Sequence[str] = STACK_PACKAGES, *, update: bool = True) -> list[str]:
    """Install what is missing of ``packages``; return what was installed.

    ``apt-get update`` runs only when the first install attempt fails (fresh machines have no package
    lists). A package that still cannot be installed raises StackError naming it, in one line.
    """
    todo = missing(packages)
    if not todo:
        return []
    if shutil.which("apt-get") is None:
        raise StackError(
            f"missing Debian packages {' '.join(todo)} and there is no apt-get: install them by hand"
        )
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages: run `sudo apt-get install -y {' '.join(todo)}` once")
    proc = _apt(["install", "-y", *todo])
    if proc.returncode != 0 and update:
        _apt(["update"])
        proc = _apt(["install", "-y", *todo])
    if proc.returncode != 0:
        # Find which package is at fault, to name it.
        for name in todo:
            one = proc if len(todo) == 1 else _apt(["install", "-y", name])
            if one.returncode != 0:
                raise StackError(
                    f"cannot install Debian package {name!r} ({_last_error(one)}): "
                    f"check your apt sources or install it by hand with `apt-get install {name}`"
                )
        raise StackError(f"apt-get install {' '.join(todo)} failed: {_last_error(proc)}")
    still = missing(todo)
    if still:
        raise StackError(f"Debian packages {' '.join(still)} are still not installed after apt-get")
    return todo
