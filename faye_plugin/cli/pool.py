"""``faye pool sync | status``: the Airflow pool ``faye_test_servers`` follows the catalogue.

The pool has one slot per test server in the catalogue and counts deferred tasks
(``include_deferred``): a test task that defers while waiting for a lease keeps its place in the queue.
Everything goes through the REST API (``POST``/``PATCH /api/v2/pools``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from faye_plugin.catalogue import load_catalogue
from faye_plugin.cli.logs import add_airflow_flags, client_from_args
from faye_plugin.hooks.airflow_api import AirflowApiClient
from faye_plugin.settings import TEST_SERVERS_POOL

DESCRIPTION = "faye test servers: one slot per server of the catalogue (faye pool sync)"


def pool_body(slots: int, name: str = TEST_SERVERS_POOL) -> dict[str, Any]:
    """Return the full pool body (3.3's PATCH wants all fields)."""
    return {"name": name, "slots": slots, "description": DESCRIPTION, "include_deferred": True}


def sync_pool(client: AirflowApiClient, slots: int, name: str = TEST_SERVERS_POOL) -> dict[str, Any]:
    """Create or update the pool to ``slots`` slots (deferred tasks counted); return the API's pool."""
    body = pool_body(slots, name)
    if client.pool(name) is None:
        response = client.request("POST", "/pools", json=body, ok=(200, 201))
    else:
        response = client.request("PATCH", f"/pools/{quote(name, safe='')}", json=body)
    return dict(response.json())


def _sync(args: argparse.Namespace) -> int:
    catalogue = load_catalogue(Path(args.catalogue) if args.catalogue else None)
    slots = len(catalogue.test_servers)
    pool = sync_pool(client_from_args(args), slots)
    names = ", ".join(s.name for s in catalogue.test_servers) or "none"
    print(f"pool {pool['name']}: {pool['slots']} slot(s) for test servers {names} (deferred tasks count)")
    return 0


def _status(args: argparse.Namespace) -> int:
    pool = client_from_args(args).pool(TEST_SERVERS_POOL)
    if pool is None:
        print(f"pool {TEST_SERVERS_POOL} does not exist: run `faye pool sync`")
        return 1
    print(json.dumps(pool, indent=1))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pool", help=f"the Airflow pool {TEST_SERVERS_POOL} (one slot per test server)"
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sync = sub.add_parser("sync", help="set the pool's size to the catalogue's number of test servers")
    sync.add_argument("--catalogue", help="the catalogue YAML (default: [faye] catalogue / $FAYE_HOME)")
    add_airflow_flags(sync)
    sync.set_defaults(func=_sync)
    status = sub.add_parser("status", help="print the pool as the API reports it")
    add_airflow_flags(status)
    status.set_defaults(func=_status)
