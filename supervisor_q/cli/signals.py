"""`signal SIG TARGET` and `pid [TARGET]`: Supervisor's two process-addressing commands,
answered by the running master through its control socket."""

from __future__ import annotations

import argparse
import sys

from supervisor_q import paths
from supervisor_q.ctl.protocol import ControlError, request

TARGET_HELP = "a program, GROUP:* (its group: key), all, or a glob such as 'emails*'"


def add_signal_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("signal", help="send a signal to programs' running children")
    s.add_argument("signal", help="a signal name or number: HUP, SIGUSR1, 10...")
    s.add_argument("program", help=TARGET_HELP)
    s.set_defaults(handler=cmd_signal)
    p = sub.add_parser("pid", help="the master's pid, or the pids of programs' children")
    p.add_argument("program", nargs="?", help=TARGET_HELP + " (default: the master)")
    p.set_defaults(handler=cmd_pid)


def cmd_signal(args: argparse.Namespace) -> int:
    """Exit 2 for a signal name that does not exist (a usage error, checked here), 1 when
    the master refuses or no process was running to receive it."""
    from supervisor_q.master.addressing import NOTHING_SIGNALLED, parse_signal  # (slow)

    try:
        parse_signal(args.signal)
    except ControlError as exc:
        print(f"supervisor-q signal: {exc}", file=sys.stderr)
        return 2
    try:
        answer = request(paths.control_socket(args.socket), "signal", signal=args.signal,
                         program=args.program)
    except ControlError as exc:
        print(f"supervisor-q signal: {exc}", file=sys.stderr)
        return 1
    print(answer)
    return 1 if str(answer).endswith(NOTHING_SIGNALLED) else 0


def cmd_pid(args: argparse.Namespace) -> int:
    """One pid a line (`kill -HUP $(supervisor-q pid web)`); 1 when none is running."""
    kwargs = {"program": args.program} if args.program else {}
    try:
        found = request(paths.control_socket(args.socket), "pid", **kwargs)
    except ControlError as exc:
        print(f"supervisor-q pid: {exc}", file=sys.stderr)
        return 1
    for entry in found:
        print(entry["pid"])
    if not found:
        print(f"supervisor-q pid: no running process of {args.program!r}", file=sys.stderr)
        return 1
    return 0
