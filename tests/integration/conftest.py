"""Fixtures the integration tests share: hooks on the stack's peers, the sample repository's commits, and
a chromium page logged in to the Airflow UI."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faye_testing import CHROMIUM, CHROMIUM_ARGS

#: The sample service the integration tests deploy.
SAMPLE_SERVICE = "hello"


@pytest.fixture(scope="module")
def peers(stack_process_env: dict[str, str]) -> dict[str, Any]:
    """Hooks on the stack's peers for ``hello``, built as the stack's tasks build them."""
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook
    from faye_plugin.hooks.proxy import ProxyHook

    catalogue = load_catalogue()
    spec = catalogue.service(SAMPLE_SERVICE)
    return {
        "spec": spec,
        "catalogue": catalogue,
        "cloud_run": CloudRunPreviewHook(gcp_conn_id=spec.cloud_run.gcp_conn_id),
        "proxy": ProxyHook(proxy_conn_id=spec.proxy_conn_id),
    }


@pytest.fixture(scope="module")
def shas(stack: dict[str, Any]) -> list[str]:
    """The sample repository's commits, newest first (at least two)."""
    out = subprocess.run(
        ["git", "-C", stack["sample_repo"], "log", "--format=%H"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(out) >= 2, "the sample repository needs two commits"
    return out


@pytest.fixture(scope="module")
def page(stack: dict[str, Any]) -> Iterator[Any]:
    """A chromium page logged in to the Airflow UI through its login form (once per module)."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        # Not on a fresh machine: installed here as `faye stack up` installs the stack's own packages
        # (apt-get, once; it raises naming the package when it cannot).
        from faye_plugin.stack import packages

        packages.ensure(("chromium",))
    url = stack["airflow_url"].rstrip("/")
    with playwright.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            page = ctx.new_page()
            page.set_default_timeout(120000)
            page.goto(f"{url}/", timeout=120000)
            page.locator("input[name=username]").fill(stack["airflow_username"])
            page.locator("input[name=password]").fill(stack["airflow_password"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda u: "/auth/login" not in u, timeout=120000)
            yield page
        finally:
            ctx.close()
