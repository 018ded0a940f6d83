"""Caddy as the preview proxy: an HTTP server ``previews`` whose routes the deploy DAG edits live.

The initial config has the admin API on the admin port, the server ``previews`` on the proxy port
(plain HTTP, ``automatic_https.disable``) and one catch-all 404 route with ``@id`` ``fallback``; slot
routes (``<slot>.preview.localhost``) are inserted before it through the admin API.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.processes import ProcessSpec

SERVER = "previews"
DOMAIN = "preview.localhost"
FALLBACK_ID = "fallback"


def autosave_path(cfg: StackConfig) -> Path:
    """Where Caddy autosaves its config (``$XDG_CONFIG_HOME/caddy/autosave.json``)."""
    return cfg.home / "caddy" / "config" / "caddy" / "autosave.json"


def saved_slot_routes(cfg: StackConfig) -> list[dict[str, Any]]:
    """The routes, other than the fallback, that the last Caddy of this stack served (none if unreadable)."""
    try:
        saved = json.loads(autosave_path(cfg).read_text())
        routes = saved["apps"]["http"]["servers"][SERVER]["routes"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not isinstance(routes, list):
        return []
    return [r for r in routes if isinstance(r, dict) and r.get("@id") != FALLBACK_ID]


def initial_config(cfg: StackConfig, slot_routes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "admin": {"listen": f"127.0.0.1:{cfg.ports['proxy_admin']}", "config": {"persist": True}},
        "logging": {"logs": {"default": {"level": "WARN"}}},
        "apps": {
            "http": {
                "servers": {
                    SERVER: {
                        "listen": [f"127.0.0.1:{cfg.ports['proxy']}"],
                        "automatic_https": {"disable": True},
                        "routes": [
                            *(slot_routes or []),
                            {
                                "@id": FALLBACK_ID,
                                "handle": [
                                    {
                                        "handler": "static_response",
                                        "status_code": 404,
                                        "body": "faye: no preview is served at this address\n",
                                    }
                                ],
                            },
                        ],
                    }
                }
            }
        },
    }


def service_spec(cfg: StackConfig, base_env: dict[str, str]) -> ProcessSpec:
    root = cfg.home / "caddy"
    root.mkdir(parents=True, exist_ok=True)
    path = root / "caddy.json"
    path.write_text(json.dumps(initial_config(cfg, saved_slot_routes(cfg)), indent=1))
    binary = shutil.which("caddy") or "/usr/bin/caddy"
    env = {
        **base_env,
        "HOME": str(root),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CONFIG_HOME": str(root / "config"),
    }
    return ProcessSpec(
        name="caddy",
        argv=[binary, "run", "--config", str(path)],
        env=env,
        cwd=root,
        log=cfg.log_dir / "caddy.log",
    )


def health_url(cfg: StackConfig) -> str:
    return f"{cfg.url('proxy_admin')}/config/"
