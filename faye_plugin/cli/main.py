"""The ``faye`` console script.

Subcommands live in sibling modules: any module of ``faye_plugin.cli`` that defines
``register(subparsers)`` is picked up. ``register`` adds its parser(s) and sets ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning an exit code) with ``set_defaults``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import faye_plugin.cli as cli_package
from faye_plugin.exceptions import FayeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faye", description="Per-pull-request previews on Cloud Run.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(cli_package.__path__), key=lambda m: m.name):
        if info.name == "main" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{cli_package.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FayeError as err:
        print(f"faye: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
