"""The GitHub API double as a part of the local stack (the server itself: ``stack/github_double.py``)."""

from __future__ import annotations

import sys

from faye_plugin.stack import airflow
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.github_double import TOKEN_ENV
from faye_plugin.stack.processes import ProcessSpec

#: The repository of the sample service ``hello`` on the double (the catalogue's ``github.repo``).
SAMPLE_REPO = "local/hello"


def service_spec(cfg: StackConfig, base_env: dict[str, str]) -> ProcessSpec:
    state = cfg.home / "github"
    state.mkdir(parents=True, exist_ok=True)
    env = {**base_env, TOKEN_ENV: airflow.stack_secrets(cfg)["github_token"]}
    return ProcessSpec(
        name="github",
        argv=[
            *(sys.executable, "-m", "faye_plugin.stack.github_double", "--host", "127.0.0.1"),
            *("--port", str(cfg.ports["github"]), "--state-dir", str(state), "--repo", SAMPLE_REPO),
            "--any-pull",
        ],
        env=env,
        cwd=state,
        log=cfg.log_dir / "github.log",
    )


def health_url(cfg: StackConfig) -> str:
    return f"{cfg.url('github')}/_double/health"
