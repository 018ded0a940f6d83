"""The GitHub API double as a part of the local stack (the server itself: ``stack/github_double.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

from faye_plugin.stack import airflow
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.github_double import TOKEN_ENV
from faye_plugin.stack.github_webhooks import WEBHOOK_SECRET_ENV
from faye_plugin.stack.processes import ProcessSpec

#: The repository of the sample service ``hello`` on the double (the catalogue's ``github.repo``).
SAMPLE_REPO = "local/hello"


def service_spec(cfg: StackConfig, base_env: dict[str, str]) -> ProcessSpec:
    state = cfg.home / "github"
    state.mkdir(parents=True, exist_ok=True)
    secrets = airflow.stack_secrets(cfg)
    env = {
        **base_env,
        TOKEN_ENV: secrets["github_token"],
        WEBHOOK_SECRET_ENV: secrets["github_webhook_secret"],
    }
    return ProcessSpec(
        name="github",
        argv=[
            *(sys.executable, "-m", "faye_plugin.stack.github_double", "--host", "127.0.0.1"),
            *("--port", str(cfg.ports["github"]), "--state-dir", str(state), "--repo", SAMPLE_REPO),
            "--any-pull",
            *("--webhook-url", webhook_url(cfg)),
        ],
        env=env,
        cwd=state,
        log=cfg.log_dir / "github.log",
    )


def health_url(cfg: StackConfig) -> str:
    return f"{cfg.url('github')}/_double/health"


def webhook_url(cfg: StackConfig) -> str:
    """faye's webhook endpoint on the stack's api-server (the plugin's ``/faye/github/webhook``)."""
    return f"{cfg.url('airflow')}/faye/github/webhook"


PUSH_HOOK = """#!{python}
# Written by faye stack up: tell the GitHub double about each push to this repository, as GitHub
# learns of a push (its open pull requests from the pushed branch get a `synchronize` event).
import json, sys, urllib.request

for line in sys.stdin:
    old, new, ref = line.split()
    if not ref.startswith("refs/heads/") or set(new) == {{"0"}}:
        continue
    body = json.dumps({{"repo": "{repo}", "ref": ref, "sha": new}}).encode()
    request = urllib.request.Request(
        "{url}/_double/push", data=body, headers={{"Content-Type": "application/json"}}
    )
    try:
        moved = json.load(urllib.request.urlopen(request, timeout=10)).get("pulls", [])
    except OSError as err:
        print(f"faye: the GitHub double did not take the push: {{err}}", file=sys.stderr)
        continue
    for number in moved:
        print(f"faye: pull request #{{number}} moved to {{new[:7]}} (the double sent `synchronize`)")
"""


def write_push_hook(cfg: StackConfig) -> Path:
    """Install the sample repository's ``post-receive`` hook that reports pushes to the double."""
    path = cfg.sample_repo / ".git" / "hooks" / "post-receive"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = PUSH_HOOK.format(python=sys.executable, repo=SAMPLE_REPO, url=cfg.url("github"))
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        path.chmod(0o755)
    return path
