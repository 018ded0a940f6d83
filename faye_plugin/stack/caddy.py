"""Caddy as the preview proxy: an HTTP server ``previews`` whose routes the deploy DAG edits live.

The initial config has the admin API on the admin port, the server ``previews`` on the proxy port
(plain HTTP, ``automatic_https.disable``) and one catch-all 404 route with ``@id`` ``fallback``; slot
routes (``<slot>.preview.localhost``) are inserted before it through the admin API.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.processes import ProcessSpec

SERVER = "previews"
DOMAIN = "preview.localhost"
FALLBACK_ID = "fallback"


def initial_config(cfg: StackConfig) -> dict[str, Any]:
    return {
        "admin": {"listen": f"127.0.0.1:{cfg.ports['proxy_admin']}", "config": {"persist": False}},
        "logging": {"logs": {"default": {"level": "WARN"}}},
        "apps": {
            "http": {
                "servers": {
                    SERVER: {
                        "listen": [f"127.0.0.1:{cfg.ports['proxy']}"],
                        "automatic_https": {"disable": True},
                        "routes": [
                            {
                                "@id": FALLBACK_ID,
                                "handle": [
                                    {
                                        "handler": "static_response",
                                        "status_code": 404,
                                        "body": "faye: no preview is served at this address\n",
                                    }
                                ],
                            }
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
    path.write_text(json.dumps(initial_config(cfg), indent=1))
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
