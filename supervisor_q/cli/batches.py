"""`supervisor-q batches list | show ID | cancel ID | prune --hours N [--unfinished]`.

(`failed retry-batch ID` lives with the other failed-store commands in cli_jobs.)
Imports batches, backend and paths.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from supervisor_q.cli.jobs import non_negative, positive
from supervisor_q.paths import resolve_redis_url
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.ids import shown
from supervisor_q.workflows import batches


def add_batch_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batches", help="job batches: list | show | cancel | prune")
    bsub = p.add_subparsers(dest="action", required=True)
    bl = bsub.add_parser("list")
    bl.add_argument("--json", action="store_true", help="JSON output")
    bl.add_argument("--limit", type=positive, default=50, help="most batches shown")
    bs = bsub.add_parser("show")
    bs.add_argument("id", help="batch id")
    bc = bsub.add_parser("cancel")
    bc.add_argument("id", help="batch id")
    bp = bsub.add_parser("prune", help="forget finished batches older than N hours")
    bp.add_argument("--hours", type=non_negative, required=True,
                    help="forget batches finished longer ago than this")
    bp.add_argument("--unfinished", action="store_true", help="unfinished ones too")
    p.set_defaults(handler=cmd_batches)


def cmd_batches(args: argparse.Namespace) -> int:
    queue = RedisQueue(connect(resolve_redis_url(args.redis_url)))
    if args.action == "list":
        found = batches.list_batches(queue, args.limit)
        if args.json:
            print(json.dumps([p.to_json() for p in found], indent=1))
        for p in [] if args.json else found:
            print(f"{shown(p.id)}  {shown(p.name) or '-'}  {p.processed}/{p.total} ({p.percent}%)  "
                  f"failed={p.failed}{'  cancelled' if p.cancelled else ''}"
                  f"{'  finished' if p.finished else ''}")
        return 0
    if args.action == "prune":
        removed = batches.prune(queue, time.time() - args.hours * 3600,
                                unfinished=args.unfinished)
        print(f"pruned {removed} batch(es) older than {args.hours:g} h")
        return 0
    handle = batches.Batch(args.id, queue)
    progress = handle.progress()
    if progress is None:
        print(f"no batch {shown(args.id)[:300]}", file=sys.stderr)
        return 1
    if args.action == "cancel":
        handle.cancel()
        print(f"cancelled batch {shown(args.id)[:300]}")
        return 0
    print(json.dumps(progress.to_json(), indent=1))
    return 0
