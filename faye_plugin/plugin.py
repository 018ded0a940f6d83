"""faye's Airflow plugin: small and cheap to import (every Airflow process loads it).

It adds two template macros (``{{ macros.faye.preview_tag(params.pr) }}`` and
``{{ macros.faye.slot_hostname(slot, domain) }}``). Hooks, operators and triggers need no plugin
registration: they live in the installed package, and the connection types come from the provider
entry point (``faye_plugin.get_provider_info``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


def preview_tag(pr: int | str) -> str:
    """Return the Cloud Run tag of a pull request's preview (``pr-<N>``)."""
    return f"pr-{int(pr)}"


def slot_hostname(slot: str, domain: str = "preview.localhost") -> str:
    """Return the proxy hostname of a slot."""
    return f"{slot}.{domain.strip('.')}"


class FayePlugin(AirflowPlugin):
    """Registers faye's macros."""

    name = "faye"
    macros = [preview_tag, slot_hostname]
