"""`failed list | retry | forget | flush | prune | retry-batch`: the failed-job store.

A page of `failed list` costs one page of Redis work (queue/failedpage.py), whatever
its number; each line starts with its row number, which `failed retry --range 3-7`
takes back (rows as the list shows them now: newest first, and a job failing in
between shifts them down). `retry all` and `prune` run in chunks (queue/failed.py).
Split from jobs.py, which builds the parser and passes the queue in.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.ids import shown
from supervisor_q.queue.payload import from_printable, printable

LIST_FIELDS = ("id", "job", "queue", "args", "kwargs", "attempts", "failed_at", "reason",
               "exception")
MAX_RANGE = 1_000_000  # rows one --range may name


def row_ranges(value: str) -> list[tuple[int, int]]:
    """`3`, `1-5` or `1-5,9,12-14`: row numbers of `failed list`, from 1."""
    ranges = []
    for part in value.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last if dash else first)
        except ValueError:
            low = high = 0
        if low < 1 or high < low or high - low >= MAX_RANGE:
            raise argparse.ArgumentTypeError(
                f"'{shown(value[:80])}' is not a row range like 3, 1-5 or 1-5,9 (rows from 1, "
                f"at most {MAX_RANGE:,} rows per range)")
        ranges.append((low, high))
    return ranges


def cmd_failed(queue: RedisQueue, args: argparse.Namespace) -> int:
    if args.action == "list":
        return _failed_list(queue, args)
    if args.action == "retry":
        return _failed_retry(queue, args)
    if args.action == "retry-batch":
        from supervisor_q.workflows.batches import retry_batch

        count = retry_batch(queue, args.id)
        if count is None:
            print(f"no batch {_one_line(args.id)}", file=sys.stderr)
            return 1
        print(f"queued {count} failed job(s) of batch {_one_line(args.id)} again")
        return 0
    if args.action == "forget":
        record = _find_failed(queue, args.id)
        if record is None or not queue.forget_failed(record["queue"], record["id"]):
            print(f"no failed job {_one_line(args.id)}", file=sys.stderr)
            return 1
        print(f"forgot {_one_line(record['id'])}")
        return 0
    if args.action == "flush":
        print(f"flushed {queue.flush_failed()} failed job(s)")
        return 0
    removed = queue.prune_failed(time.time() - args.hours * 3600)
    print(f"pruned {removed} failed job(s) older than {args.hours:g} h")
    return 0


def _failed_list(queue: RedisQueue, args: argparse.Namespace) -> int:
    start = (args.page - 1) * args.per_page
    page, total = queue.failed_page([args.queue] if args.queue else None, start,
                                    args.per_page)
    if args.json:
        print(json.dumps([{"row": start + n + 1, **{k: _shown(r.get(k)) for k in LIST_FIELDS},
                           "failed_at": _in_ms(r.get("failed_at"))}
                          for n, r in enumerate(page)], indent=1))
        return 0
    if not page:
        print("no failed jobs" if total == 0 else f"no page {args.page} ({total} in all)")
        return 0
    for n, r in enumerate(page):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("failed_at", 0)))
        print(f"{start + n + 1}  {_one_line(r['id'])}  {when}  {_one_line(r.get('queue'))}  "
              f"{_one_line(r.get('job') or '(unreadable payload)')}  "
              f"attempts={r.get('attempts')}  "
              f"{_one_line(r.get('reason'))}")
    if total > start + len(page):
        print(f"(page {args.page}; {total} in all; --page {args.page + 1} for more)")
    return 0


def _shown(value: object) -> object:
    """A record field as `failed list --json` prints it: ids and payloads may hold any
    bytes; those that are not UTF-8 show as \\xNN, so the output is strict JSON."""
    return printable(value) if isinstance(value, str) else value


def _in_ms(value: object) -> object:
    """failed_at as the list is ordered by (whole milliseconds, queue/backend.py's score)."""
    return int(value * 1000) / 1000 if isinstance(value, int | float) else value


def _one_line(value: object) -> str:
    """A field for the text listing (and any echoed id): the shown form (queue/ids.py: no
    control character reaches the terminal), at most 300 characters."""
    text = shown(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 300 else text[:300] + f"... ({len(text)} characters)"


def _find_failed(queue: RedisQueue, job_id: str) -> dict | None:
    """A failed record by its id as stored, or as `failed list` shows it."""
    record = queue.find_failed(job_id)
    if record is None and (stored := from_printable(job_id)) != job_id:
        record = queue.find_failed(stored)
    return record


def _failed_retry(queue: RedisQueue, args: argparse.Namespace) -> int:
    queues = [args.queue] if args.queue else None
    if args.ranges:
        if args.ids:
            print("supervisor-q failed retry: give ids or --range, not both", file=sys.stderr)
            return 2
        records, complete = _rows(queue, queues, [r for each in args.ranges for r in each])
        print(f"queued {queue.retry_failed_many(records)} failed job(s) again")
        return 0 if complete else 1  # a row past the end: said, and exit 1 as for an id
    elif args.queue or args.ids == ["all"]:
        print(f"queued {queue.retry_all_failed(queues)} failed job(s) again")
        return 0
    elif args.ids:
        records = []
        for job_id in args.ids:
            record = _find_failed(queue, job_id)
            if record is None:
                print(f"no failed job {_one_line(job_id)}", file=sys.stderr)
                return 1
            records.append(record)
    else:
        print("supervisor-q failed retry: give job ids, 'all', --range or --queue Q",
              file=sys.stderr)
        return 2
    print(f"queued {queue.retry_failed_many(records)} failed job(s) again")
    return 0


def _rows(queue: RedisQueue, queues: list[str] | None,
          ranges: list[tuple[int, int]]) -> tuple[list[dict], bool]:
    """The records at these rows of the list, each once (all read before any retry, so
    retrying one range does not shift the next); False when a range passed the end."""
    chosen: dict[tuple[str, str], dict] = {}
    complete = True
    for low, high in ranges:
        page, total = queue.failed_page(queues, low - 1, high - low + 1)
        if high > total:
            print(f"rows {low}-{high}: the list has {total} row(s)", file=sys.stderr)
            complete = False
        for record in page:
            chosen.setdefault((record["queue"], record["id"]), record)
    return list(chosen.values()), complete
