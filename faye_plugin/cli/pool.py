"""``faye pool sync | status``: the Airflow pool ``faye_test_servers`` follows the catalogue.

The pool has one slot per test server in the catalogue and counts deferred tasks
(``include_deferred``): a test task that defers while waiting for a lease keeps its place in the queue.
Everything goes through the REST API (``AirflowApiClient.sync_pool``, which the stack's ``up`` uses too).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from faye_plugin.airflow_rest import POOL_DESCRIPTION, AirflowApiClient
from faye_plugin.catalogue import load_catalogue
from faye_plugin.cli._common import add_airflow_flags, airflow_client
from faye_plugin.settings import TEST_SERVERS_POOL


def pool_body(slots: int, name: str = TEST_SERVERS_POOL) -> dict[str, Any]:
    """The pool's full body, as ``AirflowApiClient.sync_pool`` sends it."""
    return {"name": name, "slots": slots, "description": POOL_DESCRIPTION, "include_deferred": True}


def sync_pool(client: AirflowApiClient, slots: int, name: str = TEST_SERVERS_POOL) -> dict[str, Any]:
    """Create or update the pool to ``slots`` slots (deferred tasks counted); return the API's pool."""
    return client.sync_pool(slots, name)[0]


def _sync(args: argparse.Namespace) -> int:
    catalogue = load_catalogue(Path(args.catalogue) if args.catalogue else None)
    slots = len(catalogue.test_servers)
    pool = sync_pool(airflow_client(args), slots)
    names = ", ".join(s.name for s in catalogue.test_servers) or "none"
    print(f"pool {pool['name']}: {pool['slots']} slot(s) for test servers {names} (deferred tasks count)")
    return 0


def lease_rows(catalogue_path: Path | None = None) -> list[dict[str, Any]]:
    """Return, per test server of the catalogue, who holds it (from the server's own lease)."""
    import time

    from faye_plugin.hooks.test_servers import UNREACHABLE_ERRORS, TestServerHook

    rows: list[dict[str, Any]] = []
    for server in load_catalogue(catalogue_path).test_servers:
        row: dict[str, Any] = {"server": server.name, "docker_url": server.docker_url}
        hook = TestServerHook(server)
        try:
            lease = hook.current_lease()
        except UNREACHABLE_ERRORS as err:
            rows.append({**row, "state": f"unreachable: {err}"})
            continue
        if lease is None:
            rows.append({**row, "state": "free"})
        else:
            state = "stale" if hook.is_stale(lease) else "leased"
            rows.append(
                {**row, "state": state, "holder": lease.holder, "for_s": round(time.time() - lease.acquired)}
            )
    return rows


def _status(args: argparse.Namespace) -> int:
    pool = airflow_client(args).pool(TEST_SERVERS_POOL)
    if pool is None:
        print(f"pool {TEST_SERVERS_POOL} does not exist: run `faye pool sync`")
        return 1
    rows = lease_rows(Path(args.catalogue) if args.catalogue else None)
    if args.json:
        print(json.dumps({"pool": pool, "servers": rows}, indent=1))
        return 0
    print(
        f"pool {pool['name']}: {pool['slots']} slot(s), running {pool.get('running_slots', 0)}, "
        f"deferred {pool.get('deferred_slots', 0)}, waiting {pool.get('queued_slots', 0)} queued + "
        f"{pool.get('scheduled_slots', 0)} scheduled, include_deferred={pool.get('include_deferred')}"
    )
    for row in rows:
        holder = f"  {row['holder']} ({row['for_s']} s)" if "holder" in row else ""
        print(f"  {row['server']:<12} {row['state']:<8}{holder}")
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
    status = sub.add_parser("status", help="the pool's slots and queue, and who holds each test server")
    status.add_argument("--catalogue", help="the catalogue YAML (default: [faye] catalogue / $FAYE_HOME)")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    add_airflow_flags(status)
    status.set_defaults(func=_status)
