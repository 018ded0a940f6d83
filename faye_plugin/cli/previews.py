"""``faye previews`` / ``faye pin`` / ``faye unpin`` / ``faye expire``: the rows, the pin and the expiry of
:mod:`faye_plugin.preview_listing`, printed. Against the local stack the connections come from
``cli/_common.use_stack_connections``.
"""

from __future__ import annotations

import argparse
import json

from faye_plugin.cli._common import use_stack_connections
from faye_plugin.preview_listing import expire_now, list_previews, set_pinned


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


def _expire(args: argparse.Namespace) -> int:
    use_stack_connections()
    print(json.dumps(expire_now(args.service, args.pr)))
    print("the next faye_cleanup run removes it (trigger one: POST /api/v2/dags/faye_cleanup/dagRuns)")
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
    expire = subparsers.add_parser(
        "expire", help="bring a preview's expiry forward to now (and unpin it): the next cleanup removes it"
    )
    expire.add_argument("service")
    expire.add_argument("pr", type=int)
    expire.set_defaults(func=_expire)
