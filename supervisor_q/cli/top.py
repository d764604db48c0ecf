"""`supervisor-q top`'s arguments; the view itself is topview.py, imported only when
`top` runs, so that other commands do not load rich."""

from __future__ import annotations

import argparse


def add_top_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("top", help="live view of programs, children, jobs and queues")
    t.add_argument("--once", action="store_true", help="print one frame and exit")
    t.add_argument("--all", action="store_true", help="every master of the fleet (Redis)")
    t.set_defaults(handler=cmd_top)


def cmd_top(args: argparse.Namespace) -> int:
    from supervisor_q.cli.topview import cmd_top as run

    return run(args)
