"""``faye doctor``: check that the catalogue, Cloud Run, the proxy and the registry agree.

Exit 0 and "all consistent", or exit 1 and one line per disagreement. The peers are reached through
faye's Airflow connections (``AIRFLOW_CONN_FAYE_CLOUD_RUN``, ``..._REGISTRY``, ``..._PROXY`` or any
secrets backend); the ones not set are taken from the local stack ($FAYE_HOME, FAYE_PORT_BASE).
The catalogue is ``[faye] catalogue`` (AIRFLOW__FAYE__CATALOGUE), else $FAYE_HOME/catalogue.yaml.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

FIX_HELP = """\
Exit 0 when everything agrees, 1 with one line per disagreement.

--fix repairs through the same state transitions and hooks faye_cleanup uses (it runs the same
repair on its schedule), route first, then the Cloud Run tag and record in one etag-guarded write:
  a tag pr-N with no slot claim, no deploy in flight  -> the tag (and its slot-less record) is removed
  a claim whose tag Cloud Run no longer serves        -> the claim (record) and its route are removed
  a route to a tag Cloud Run does not serve, or to a
  slot nobody claims                                  -> the route is removed
  a route to another preview/URL/sha than the claim   -> re-pointed to the claim's tag URL
  a settled claim with no route                       -> the route is written
  a test-server lease of a finished task instance     -> released (its test containers removed)
Left alone, with the reason printed: anything a deploy in flight holds (Airflow's active faye_deploy
runs, listed before reading), pinned previews, slots/services the catalogue or Cloud Run do not know,
two claims on one slot, a revision or sha that differs from the claim, a missing image.
"""


def _doctor(args: argparse.Namespace) -> int:
    from faye_plugin.cli._common import use_stack_connections

    use_stack_connections(str(Path(args.catalogue).resolve()) if args.catalogue else None)
    from faye_plugin.catalogue import load_catalogue
    from faye_plugin.doctor import check

    catalogue = load_catalogue()
    if args.fix:
        from faye_plugin.repair import repair_all

        repairs = repair_all(catalogue)
        if not args.json:
            print("\n".join(str(r) for r in repairs) if repairs else "nothing to repair")
        problems = check(catalogue)
        if args.json:
            print(
                json.dumps(
                    {
                        "consistent": not problems,
                        "problems": problems,
                        "repairs": [r.as_dict() for r in repairs],
                    },
                    indent=1,
                )
            )
            return 1 if problems else 0
        if problems:
            print(
                "doctor, after the repair (what is left is for a deploy in flight to finish, or for a "
                "person: see faye doctor --help):"
            )
    else:
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
        description=FIX_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--catalogue", help="catalogue YAML (default: [faye] catalogue, else the stack's)")
    parser.add_argument("--json", action="store_true", help='print {"consistent": bool, "problems": [...]}')
    parser.add_argument(
        "--fix",
        action="store_true",
        help="repair what it can (see below), print each repair, then check again (exit 0 only when clean)",
    )
    parser.set_defaults(func=_doctor)
