"""`supervisor-q periodic list [--json]` and `periodic run NAME`: a running master's
periodic entries (master/periodic.py), over its control socket.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from supervisor_q import paths
from supervisor_q.ctl.protocol import ControlError, request
from supervisor_q.queue.payload import loggable


def add_periodic_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("periodic", help="periodic entries: list them, or fire one now")
    psub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = psub.add_parser("list", help="each entry's schedule, next due time, last firing")
    listing.add_argument("--json", action="store_true", help="JSON output")
    run = psub.add_parser("run", help="fire one entry now (its schedule is unchanged)")
    run.add_argument("name", help="ENTRY, or PROGRAM:ENTRY when several programs have it")
    p.set_defaults(handler=cmd_periodic)


def cmd_periodic(args: argparse.Namespace) -> int:
    extra = {"name": args.name} if args.action == "run" else {}
    try:
        result = request(paths.control_socket(args.socket), "periodic",
                         action=args.action, **extra)
    except ControlError as exc:
        print(f"supervisor-q periodic {args.action}: {exc}", file=sys.stderr)
        return 1
    if args.action == "run":
        print(_run_line(result))
        return 1 if str(result.get("outcome", "")).startswith("error") else 0
    print(json.dumps(result, indent=1) if args.json else format_list(result))
    return 0


def _run_line(record: dict[str, Any]) -> str:
    job = f"job {loggable(record['job_id'])} on {record['queue']}" if record.get("job_id") \
        else "no job"
    return f"{job}: {loggable(record.get('outcome'), 400)}"


def format_list(entries: list[dict[str, Any]]) -> str:
    """One line per entry: PROGRAM:ENTRY, schedule, next due, last firing and outcome."""
    if not entries:
        return "no periodic entries"
    lines = []
    for e in entries:
        paused = "" if e["firing"] else " (not firing: stopped or paused)"
        last = "never fired"
        if e["last_fired"]:
            state = f", job {e['last_job_state']}" if e["last_job_state"] else ""
            last = (f"last {e['last_fired']} job {loggable(e['last_job_id'])} "
                    f"{e['last_outcome']}{state}")
        elif e["last_outcome"]:
            last = str(e["last_outcome"])
        lines.append(f"{e['program']}:{e['entry']:<20} {e['schedule']} ({e['timezone']}) "
                     f"job {e['job']}  next {e['next_due'] or '-'}{paused}  {last}")
    return "\n".join(lines)
