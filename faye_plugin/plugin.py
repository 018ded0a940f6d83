"""faye's Airflow plugin: small and cheap to import (every Airflow process loads it).

It adds:
- the previews page (``faye_plugin.api.previews_page``: a FastAPI app at ``/faye``, in the
  navigation under Browse), built only when the api-server asks for it;
- the trigger gate (``faye_plugin.api.gate``: a bad trigger of a faye DAG gets HTTP 400 naming
  every problem);
- two listeners: ``run_listener`` writes each faye run's note at its start and end (scheduler,
  api-server), ``task_errors`` makes a task's expected error one log line and keeps its reason for
  that note (task process);
- two template macros (``{{ macros.faye.preview_tag(params.pr) }}`` and
  ``{{ macros.faye.slot_hostname(slot, domain) }}``).

Hooks, operators and triggers need no plugin registration: they live in the installed package, and
the connection types come from the provider entry point (``faye_plugin.get_provider_info``).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from faye_plugin import run_listener, task_errors
from faye_plugin.api.gate import TriggerGate
from faye_plugin.naming import tag_of


def preview_tag(pr: int | str) -> str:
    """Return the Cloud Run tag of a pull request's preview (``pr-<N>``)."""
    return tag_of(pr)


def slot_hostname(slot: str, domain: str = "preview.localhost") -> str:
    """Return the proxy hostname of a slot."""
    return f"{slot}.{domain.strip('.')}"


class FayePlugin(AirflowPlugin):
    """Registers faye's macros, its trigger gate, its listeners and the previews page."""

    name = "faye"
    macros = [preview_tag, slot_hostname]
    fastapi_root_middlewares = [{"name": "faye trigger gate", "middleware": TriggerGate}]
    listeners = [run_listener, task_errors]
    external_views = [
        {
            "name": "Previews",
            "href": "/faye/previews/",
            "destination": "nav",
            "category": "browse",
            "url_route": "faye-previews",
        }
    ]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The previews page's app, built only when asked for: only the api-server mounts plugin apps,
        and importing FastAPI costs every other process (scheduler, workers, tasks) seconds."""
        from faye_plugin.api import github_webhook, previews_page

        # /faye/github first: Starlette tries mounts in order, and /faye would take its paths too.
        return [github_webhook.app_spec(), previews_page.app_spec()]
