"""What the ``faye`` commands share: the Airflow REST client, its flags, and the stack's connections.

* ``add_airflow_flags`` / ``airflow_client``: ``--url`` (``--airflow-url`` is the old spelling, kept as
  an alias), ``--user``, ``--password``; else ``FAYE_AIRFLOW_URL`` / ``FAYE_AIRFLOW_USER`` /
  ``FAYE_AIRFLOW_PASSWORD``; else the local stack's (``$FAYE_HOME``, ``FAYE_PORT_BASE``: its URL, the
  ``faye`` user and the password in ``$FAYE_HOME/secrets.json``). Nothing is started or probed.
* ``use_stack_connections``: the local stack's ``AIRFLOW_CONN_*`` and catalogue for commands that call
  hooks in-process (doctor, previews), from ``stack/airflow.connections`` (the one definition), each
  only where the environment has none.

Not a command (``cli/main`` skips modules starting with ``_``).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from faye_plugin.exceptions import AirflowApiError

if TYPE_CHECKING:
    from faye_plugin.airflow_rest import AirflowApiClient


def add_airflow_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--url`` (alias ``--airflow-url``), ``--user`` and ``--password``."""
    parser.add_argument(
        "--url",
        "--airflow-url",
        dest="url",
        help="Airflow's base URL (env FAYE_AIRFLOW_URL; default: the local stack's)",
    )
    parser.add_argument("--user", help="Airflow API user (env FAYE_AIRFLOW_USER; default: the stack's)")
    parser.add_argument("--password", help="Airflow API password (env FAYE_AIRFLOW_PASSWORD)")


def airflow_client(args: argparse.Namespace) -> AirflowApiClient:
    """The REST client for the flags, else the environment, else the local stack (in that order)."""
    from faye_plugin.airflow_rest import AirflowApiClient

    url = getattr(args, "url", None) or os.environ.get("FAYE_AIRFLOW_URL")
    user = getattr(args, "user", None) or os.environ.get("FAYE_AIRFLOW_USER")
    password = getattr(args, "password", None) or os.environ.get("FAYE_AIRFLOW_PASSWORD")
    if not url:
        from faye_plugin.stack import airflow as stack_airflow
        from faye_plugin.stack.config import StackConfig

        cfg = StackConfig.from_env()
        url = cfg.url("airflow")
        user = user or stack_airflow.USERNAME
        password = password or stack_airflow.read_password(cfg)
    if not url:
        raise AirflowApiError("no Airflow URL: pass --url or set FAYE_AIRFLOW_URL")
    return AirflowApiClient(str(url), user or None, password or None)


def use_stack_connections(catalogue: str | None = None) -> None:
    """Export the local stack's connections and catalogue where the environment has none.

    :param catalogue: a catalogue path that wins over ``[faye] catalogue`` and the stack's.
    """
    from faye_plugin.stack import airflow as stack_airflow
    from faye_plugin.stack.config import StackConfig

    cfg = StackConfig.from_env()
    for name, value in stack_airflow.connections(cfg).items():
        os.environ.setdefault(name, value)
    if catalogue:
        os.environ["AIRFLOW__FAYE__CATALOGUE"] = catalogue
    else:
        os.environ.setdefault("AIRFLOW__FAYE__CATALOGUE", str(cfg.catalogue_path))
