"""Write ``$FAYE_HOME/catalogue.yaml`` for the local stack (the schema of docs/architecture.md).

The file is (re)written when it is missing or still exactly what faye wrote last time; a catalogue
edited by hand is kept as it is.
"""

from __future__ import annotations

from typing import Any

import yaml

from faye_plugin.naming import DEFAULT_MAX_LIFETIME_HOURS, DEFAULT_MAX_TTL_HOURS, DEFAULT_TTL_HOURS
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.github import SAMPLE_REPO


def render(cfg: StackConfig) -> dict[str, Any]:
    image = f"{cfg.registry_host}/hello"
    return {
        "defaults": {
            "ttl_hours": DEFAULT_TTL_HOURS,
            "max_ttl_hours": DEFAULT_MAX_TTL_HOURS,
            "slot_policy": "evict-oldest",
            "max_lifetime_hours": DEFAULT_MAX_LIFETIME_HOURS,
        },
        "builder": {"docker_url": cfg.docker_url("build")},
        "test_servers": [
            {"name": name, "docker_url": cfg.docker_url(name)} for name in cfg.test_server_names
        ],
        "services": {
            "hello": {
                "cloud_run": {
                    "project": "local",
                    "region": "europe-west1",
                    "service": "hello",
                    "gcp_conn_id": "faye_cloud_run",
                },
                "image": image,
                "registry_conn_id": "faye_registry",
                "proxy_conn_id": "faye_proxy",
                "build": {
                    "git_url": str(cfg.sample_repo),
                    "dockerfile": "Dockerfile",
                    "context": ".",
                    "build_args": {},
                },
                "slots": ["a", "b", "c"],
                "port": 8080,
                "env": {"GREETING": "hello from PR {{ pr }}"},
                "secret_env": {"DATABASE_PASSWORD": "conn:faye_hello_db:password"},
                # report to the stack's GitHub double (docs/github.md)
                "github": {"repo": SAMPLE_REPO, "conn_id": "faye_github"},
                "test": {
                    "image": image,
                    "command": ["sh", "-c", 'wget -qO- "$PREVIEW_URL" | grep -q "$GIT_SHA"'],
                    "timeout_minutes": 10,
                },
            }
        },
    }


def write(cfg: StackConfig) -> str:
    """Write the catalogue if it is missing or unedited; return "written", "unchanged" or "kept"."""
    text = "# written by `faye stack up`; edit freely (an edited file is kept)\n" + yaml.safe_dump(
        render(cfg), sort_keys=False
    )
    path = cfg.catalogue_path
    last = path.with_name(path.name + ".written")
    current = path.read_text() if path.exists() else None
    if current == text:
        return "unchanged"
    if current is not None and (not last.exists() or last.read_text() != current):
        return "kept"
    path.write_text(text)
    last.write_text(text)
    return "written"
