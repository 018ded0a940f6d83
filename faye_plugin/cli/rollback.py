"""``faye rollback SERVICE PR [--to REVISION]``: trigger ``faye_rollback`` and follow it (as
``faye teardown`` does: cli/teardown.py)."""

from __future__ import annotations

import argparse

from faye_plugin.cli.teardown import add_action_arguments
from faye_plugin.params import ROLLBACK_DAG


def register(subparsers: argparse._SubParsersAction) -> None:
    rollback = subparsers.add_parser(
        "rollback", help="move a pull request's preview back to its previous ready revision (faye_rollback)"
    )
    rollback.add_argument("--to", help="the revision to go back to (default: the previous ready one)")
    add_action_arguments(rollback, ROLLBACK_DAG)
