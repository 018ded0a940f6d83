"""``faye doctor``: check that the catalogue, Cloud Run, the proxy and the registry agree.

Exit 0 and "all consistent", or exit 1 and one line per disagreement. The peers are reached through
faye's Airflow connections (``AIRFLOW_CONN_FAYE_CLOUD_RUN``, ``..._REGISTRY``, ``..._PROXY`` or any
secrets backend); the ones not set are taken from the local stack ($FAYE_HOME, FAYE_PORT_BASE).
The catalogue is ``[faye] catalogue`` (AIRFLOW__FAYE__CATALOGUE), else $FAYE_HOME/catalogue.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def stack_connections() -> dict[str, str]:
    """The local stack's connections as ``AIRFLOW_CONN_*`` JSON values (docs/architecture.md)."""
    from faye_plugin.stack.config import StackConfig

    cfg = StackConfig.from_env()
    return {
        "AIRFLOW_CONN_FAYE_CLOUD_RUN": json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"is_anonymous": True, "project": "local", "api_endpoint": cfg.url("cloud_run")},
            }
        ),
        "AIRFLOW_CONN_FAYE_REGISTRY": json.dumps({"conn_type": "faye_registry", "host": cfg.url("registry")}),
        "AIRFLOW_CONN_FAYE_PROXY": json.dumps(
            {
                "conn_type": "faye_proxy",
                "host": cfg.url("proxy_admin"),
                "extra": {
                    "server": "previews",
                    "domain": "preview.localhost",
                    "public_url": cfg.proxy_public_url,
                },
            }
        ),
    }


def _doctor(args: argparse.Namespace) -> int:
    for name, value in stack_connections().items():
        os.environ.setdefault(name, value)
    if args.catalogue:
        os.environ["AIRFLOW__FAYE__CATALOGUE"] = str(Path(args.catalogue).resolve())
    elif "AIRFLOW__FAYE__CATALOGUE" not in os.environ:
        from faye_plugin.stack.config import StackConfig

        os.environ["AIRFLOW__FAYE__CATALOGUE"] = str(StackConfig.from_env().catalogue_path)
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.doctor import check

    catalogue = load_catalogue()
    problems = check(catalogue)
    if args.json:
        print(json.dumps({"consistent": not problems, "problems": problems}, indent=1))
    elif problems:
        print("\n".join(problems))
    else:
        print(
            f"all consistent ({len(catalogue.services)} service(s): {', '.join(sorted(catalogue.services))})"
        )
    return 1 if problems else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="compare the catalogue, Cloud Run, the proxy and the registry; list every disagreement",
        description="Exit 0 when everything agrees, 1 with one line per disagreement.",
    )
    parser.add_argument("--catalogue", help="catalogue YAML (default: [faye] catalogue, else the stack's)")
    parser.add_argument("--json", action="store_true", help='print {"consistent": bool, "problems": [...]}')
    parser.set_defaults(func=_doctor)
