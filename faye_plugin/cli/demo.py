"""``faye demo``: the stack's status for now; the deploy of ``hello`` for PR 1 lands here later."""

from __future__ import annotations

import argparse

from faye_plugin.cli.stack import print_status
from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.manager import Stack


def _demo(args: argparse.Namespace) -> int:
    status = Stack(StackConfig.from_env()).status()
    print_status(status)
    # TODO(deploy): trigger faye_deploy for PR 1 at the sample repository's HEAD, print the preview URL.
    return 0 if status["healthy"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="deploy the sample service for PR 1 and print its preview URL"
    )
    parser.set_defaults(func=_demo)
