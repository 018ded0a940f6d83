"""faye: per-pull-request preview environments on Google Cloud Run, orchestrated by Airflow."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Return provider metadata for Airflow's providers manager (connection types, versions)."""
    return {
        "package-name": "faye",
        "name": "faye",
        "description": "Preview environments per pull request on Google Cloud Run.",
        "versions": [__version__],
        "connection-types": [
            {
                "hook-class-name": "faye_plugin.hooks.registry.RegistryHook",
                "connection-type": "faye_registry",
                "hook-name": "faye: container registry (HTTP API v2)",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "placeholders": {"extra": '{"gcp_conn_id": "google_cloud_default"}'},
                    "relabeling": {
                        "host": "Registry URL",
                        "login": "Username",
                        "password": "Password or token",
                    },
                },
            },
            {
                "hook-class-name": "faye_plugin.hooks.proxy.ProxyHook",
                "connection-type": "faye_proxy",
                "hook-name": "faye: preview proxy (Caddy admin API)",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "password"],
                    "relabeling": {"host": "Admin API URL"},
                },
            },
        ],
    }
