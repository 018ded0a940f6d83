"""The ``faye`` console script.

Subcommands live in sibling modules: any module of ``faye_plugin.cli`` that defines
``register(subparsers)`` is picked up. ``register`` adds its parser(s) and sets ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning an exit code) with ``set_defaults``.

When the first argument names a module (``faye stack ...`` -> ``cli/stack.py``), only that module is
imported: a command must not pay for its siblings' imports (Airflow's take ~2 s). A module whose
command has another name is still found: every module is imported when no module matches.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import faye_plugin.cli as cli_package
from faye_plugin.exceptions import FayeError


def command_modules() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules(cli_package.__path__)
        if m.name != "main" and not m.name.startswith("_")
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; with ``command`` naming a module, register only that module."""
    parser = argparse.ArgumentParser(prog="faye", description="Per-pull-request previews on Cloud Run.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    names = command_modules()
    for name in [command] if command in names else names:
        module = importlib.import_module(f"{cli_package.__name__}.{name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FayeError as err:
        print(f"faye: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
