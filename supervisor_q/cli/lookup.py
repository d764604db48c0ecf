"""`supervisor-q job ID [--json] [--queue Q]`: one job's state, by id.
Imports jobinfo, payload, paths and backend (the connection).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from supervisor_q.cli.jobs import queue_name
from supervisor_q.paths import resolve_redis_url
from supervisor_q.queue.backend import connect
from supervisor_q.queue.jobinfo import JobStatus, job_status
from supervisor_q.queue.payload import loggable

# Field order of the text output; fields without a value are left out.
_FIELDS = ("state", "queue", "name", "attempts", "exceptions", "host", "pid", "dispatched_at",
           "started_at", "ended_at", "due_at", "runtime", "chain", "batch", "result",
           "result_error", "exception")
_TIMES = {"dispatched_at", "started_at", "ended_at", "due_at"}


def add_lookup_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("job", help="a job's state by id (queued, running, done, failed...)")
    p.add_argument("id", help="the job id as `failed list` prints it (\\xNN, \\n)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--queue", type=queue_name, default=None, help="look in this queue only")
    p.set_defaults(handler=cmd_job)


def cmd_job(args: argparse.Namespace) -> int:
    client = connect(resolve_redis_url(args.redis_url))
    found = job_status(client, args.id, args.queue)  # as given, or its shown form
    if found is None:
        print(f"supervisor-q job: no job {loggable(args.id, 200)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found.to_json(), indent=1, default=str))
        return 0
    print(f"job {loggable(found.id, 300)}")
    for name in _FIELDS:
        line = _shown(found, name)
        if line is not None:
            print(f"  {name}: {line}")
    return 0


def _shown(status: JobStatus, name: str) -> str | None:
    value = getattr(status, name)
    if value is None or value == () and name != "chain":
        return None
    if name in _TIMES:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value)) + f" ({value:.3f})"
    if name == "runtime":
        return f"{value:.3f}s"
    if name == "chain":
        return ", ".join(value) + " (still to run)" if value else "(last of its chain)"
    if name == "result":
        return loggable(json.dumps(value), 500)
    if name == "exception":  # the reason, then the traceback's last lines, indented
        return "\n    ".join(loggable(line, 300) for line in value.splitlines()[-40:])
    return loggable(value, 300) if isinstance(value, str) else str(value)
