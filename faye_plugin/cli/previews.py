"""``faye previews`` / ``faye pin`` / ``faye unpin``: read and pin previews where they live.

Everything comes from the peers themselves: each service's ``faye.dev/previews`` annotation and tags on
Cloud Run, and the proxy's slot routes. Pinning sets ``"pinned": true`` in the preview's record, which
``faye_cleanup`` honours (the preview is kept past its expiry). The hooks read Airflow connections
from the environment (``AIRFLOW_CONN_*``); against the local stack they are taken from its env.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from dataclasses import replace
from typing import Any

from faye_plugin.exceptions import InvalidRequestError


def use_stack_connections() -> None:
    """Export the local stack's connections and catalogue unless the environment already has them."""
    if os.environ.get("AIRFLOW_CONN_FAYE_CLOUD_RUN"):
        return
    from faye_plugin.stack.config import StackConfig

    env_sh = StackConfig.from_env().home / "env.sh"
    if not env_sh.exists():
        return
    for line in env_sh.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line.removeprefix("export ").partition("=")
            if key.startswith("AIRFLOW_CONN_") or key == "AIRFLOW__FAYE__CATALOGUE":
                os.environ.setdefault(key, shlex.split(value)[0] if value else "")


def list_previews(service_names: list[str] | None = None) -> list[dict[str, Any]]:
    """Return one row per preview: service, pr, tag, slot, sha, revision, expires, pinned, url, slot_url."""
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, read_previews, tag_uri
    from faye_plugin.hooks.proxy import ProxyHook

    catalogue = load_catalogue()
    rows = []
    for name in service_names or sorted(catalogue.services):
        spec = catalogue.service(name)
        target = spec.cloud_run
        service = CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id).get_service(
            project=target.project, region=target.region, service=target.service
        )
        if service is None:
            continue
        proxy = ProxyHook(proxy_conn_id=spec.proxy_conn_id)
        routes = {(r.service, int(r.pr)): r for r in proxy.list_slot_routes()}
        for tag, record in sorted(read_previews(service).items(), key=lambda item: item[1].pr):
            route = routes.get((spec.name, record.pr))
            rows.append(
                {
                    "service": spec.name,
                    "pr": record.pr,
                    "tag": tag,
                    "slot": record.slot,
                    "sha": record.sha,
                    "revision": record.revision,
                    "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.expires)),
                    "pinned": record.pinned,
                    "url": tag_uri(service, tag),
                    "slot_url": proxy.slot_url(route.slot) if route else None,
                }
            )
    return rows


def set_pinned(service_name: str, pr: int, pinned: bool) -> dict[str, Any]:
    """Set the preview's pin in its record; raise InvalidRequestError if there is no such preview."""
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.hooks.cloud_run import CloudRunPreviewHook, preview_tag, read_previews, write_previews

    spec = load_catalogue().service(service_name)
    target = spec.cloud_run
    tag = preview_tag(pr)
    found: dict[str, Any] = {}

    def change(service: Any) -> tuple[Any, list[str]] | None:
        previews = read_previews(service) if service is not None else {}
        if tag not in previews:
            return None
        previews[tag] = replace(previews[tag], pinned=pinned)
        found["record"] = previews[tag]
        write_previews(service, previews)
        return service, ["annotations"]

    CloudRunPreviewHook(gcp_conn_id=target.gcp_conn_id).modify_service(
        project=target.project, region=target.region, service=target.service, change=change
    )
    if "record" not in found:
        raise InvalidRequestError(f"{service_name} has no preview for PR {pr} (tag {tag})")
    record = found["record"]
    return {"service": service_name, "pr": pr, "tag": tag, "pinned": record.pinned, "expires": record.expires}


def _previews(args: argparse.Namespace) -> int:
    use_stack_connections()
    rows = list_previews(args.service or None)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    columns = ("service", "pr", "slot", "sha", "revision", "expires", "pinned", "slot_url", "url")
    table = [[str(r[c] if c != "sha" else (r[c] or "")[:12]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in table]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if not rows:
        print("(no previews)")
    return 0


def _pin(args: argparse.Namespace) -> int:
    use_stack_connections()
    print(json.dumps(set_pinned(args.service, args.pr, args.command == "pin")))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser(
        "previews", help="list previews: service, pr, slot, sha, revision, expiry, URLs"
    )
    listing.add_argument("--service", action="append", help="only this service (repeatable)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_previews)
    for name, text in (("pin", "keep a preview past its expiry"), ("unpin", "let a pinned preview expire")):
        parser = subparsers.add_parser(name, help=text)
        parser.add_argument("service")
        parser.add_argument("pr", type=int)
        parser.set_defaults(func=_pin)
