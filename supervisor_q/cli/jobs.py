"""CLI commands that talk to Redis directly: work, dispatch, queue, failed, restart-workers."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from datetime import datetime

from supervisor_q import exitcodes
from supervisor_q.cli import failed
from supervisor_q.config.schema import MAX_PREFETCH
from supervisor_q.logs import configure_logging
from supervisor_q.paths import resolve_redis_url
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.ids import shown
from supervisor_q.queue.keys import check_queue_name
from supervisor_q.queue.payload import NotSerialisable
from supervisor_q.worker.boot import run_standalone
from supervisor_q.worker.loop import MAX_BLOCK, WorkerSettings


def _queue(args: argparse.Namespace, socket_timeout: float | None = 30.0) -> RedisQueue:
    return RedisQueue(connect(resolve_redis_url(args.redis_url), socket_timeout=socket_timeout))


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def queue_name(value: str) -> str:
    """One queue name, by the rule every program's `queues:` follows."""
    try:
        return check_queue_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def queue_names(value: str) -> tuple[str, ...]:
    """Q1,Q2: at least one, each a valid queue name."""
    names = _csv(value)
    if not names:
        raise argparse.ArgumentTypeError(f"no queue named in {value!r}")
    return tuple(queue_name(name) for name in names)


def _backoff(value: str) -> tuple[int, ...]:
    try:
        parsed = tuple(int(v) for v in _csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError("backoff is a number or a comma list: 2,10") from None
    if not parsed or any(v < 0 for v in parsed):
        raise argparse.ArgumentTypeError("backoff values must be >= 0")
    return parsed


def non_negative(value: str) -> float:
    """A finite number >= 0 (NaN or infinity would reach Redis as a broken score)."""
    try:
        parsed = float(value)
    except ValueError:
        parsed = math.nan
    if not math.isfinite(parsed) or parsed < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a finite number >= 0")
    return parsed


def count(value: str) -> int:
    """A whole number >= 0."""
    try:
        parsed = int(value)
    except ValueError:
        parsed = -1
    if parsed < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 0")
    return parsed


def positive(value: str) -> int:
    try:
        parsed = int(value)
    except ValueError:
        parsed = 0
    if parsed < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return parsed


def add_work_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("work", help="run one worker in the foreground (no master)")
    p.add_argument("--queue", type=queue_names, default=("default",),
                   help="queues in priority order, comma-separated (default: default)")
    p.add_argument("--import", dest="imports", type=_csv, default=(),
                   help="modules that register jobs, comma-separated")
    p.add_argument("--setup", metavar="MODULE:FUNCTION", default=None,
                   help="called before the imports, e.g. django:setup")
    p.add_argument("--tries", type=int, default=1, help="attempts before a job fails")
    p.add_argument("--backoff", type=_backoff, default=(0,),
                   help="retry delays in seconds, comma-separated; the last repeats")
    p.add_argument("--timeout", type=non_negative, default=60.0,
                   help="hard limit for one job, seconds")
    p.add_argument("--sleep", type=non_negative, default=3.0,
                   help="longest idle wait for a job, seconds")
    p.add_argument("--rest", type=non_negative, default=0.0,
                   help="pause between two jobs, seconds")
    p.add_argument("--max-jobs", type=int, default=0, help="exit after N jobs (0 = never)")
    p.add_argument("--max-time", type=non_negative, default=0.0,
                   help="exit after N seconds, between jobs (0 = never)")
    p.add_argument("--memory", type=int, default=128, help="MB of RSS; 0 = off")
    p.add_argument("--prefetch", type=int, default=1, help="jobs reserved at once")
    p.add_argument("--keep-jobs", type=non_negative, default=3600.0,
                   help="seconds a done job stays findable by `job ID` (0 = not kept)")
    p.add_argument("--keep-jobs-max", type=int, default=10_000,
                   help="most done jobs kept per queue")
    p.add_argument("--once", action="store_true", help="run one job (or none), then exit")
    p.add_argument("--stop-when-empty", action="store_true",
                   help="exit once the queues are empty")
    p.add_argument("--quiet", action="store_true",
                   help="no line at each job's start and end")
    p.set_defaults(handler=cmd_work)


def _import_from_cwd() -> None:
    """`--import mod` finds mod.py in the current directory, as `python -m` would: the
    console script's sys.path[0] is its own bin directory, not the directory it runs in."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def cmd_work(args: argparse.Namespace) -> int:
    wrong = [f"{flag} {value} (must be {rule})" for flag, value, fits, rule in (
        ("--tries", args.tries, args.tries >= 1, ">= 1"),
        ("--keep-jobs-max", args.keep_jobs_max, args.keep_jobs_max >= 1, ">= 1"),
        ("--prefetch", args.prefetch, 1 <= args.prefetch <= MAX_PREFETCH,
         f"1..{MAX_PREFETCH}"),
        ("--timeout", args.timeout, args.timeout > 0, "> 0"),
        ("--sleep", args.sleep, args.sleep > 0, "> 0")) if not fits]
    if wrong:
        print(f"supervisor-q work: {'; '.join(wrong)}", file=sys.stderr)
        return 2
    configure_logging(getattr(args, "log_format", "text"))
    _import_from_cwd()
    settings = WorkerSettings(
        queues=args.queue, imports=args.imports, setup=args.setup, tries=args.tries,
        backoff=args.backoff,
        timeout=args.timeout, sleep=args.sleep, rest=args.rest, max_jobs=args.max_jobs,
        max_time=args.max_time, memory=args.memory, once=args.once,
        stop_when_empty=args.stop_when_empty, prefetch=args.prefetch, jitter=0.0,
        keep_jobs=args.keep_jobs, keep_jobs_max=args.keep_jobs_max, log_jobs=not args.quiet,
        label="work:" + ",".join(args.queue))
    queue = _queue(args, socket_timeout=MAX_BLOCK + 10)
    return run_standalone(settings, queue)


def add_job_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dispatch", help="queue a job by name")
    p.add_argument("name", help="module:function")
    p.add_argument("--args", default="[]", help="JSON list (or object for kwargs)")
    p.add_argument("--kwargs", default="{}", help="JSON object")
    p.add_argument("--queue", type=queue_name, default=None,
                   help="the queue (default: the job's own)")
    p.add_argument("--delay", type=non_negative, default=None,
                   help="seconds (default: the job's)")
    p.set_defaults(handler=cmd_dispatch)

    q = sub.add_parser("queue", help="queue size | clear | stats | monitor")
    q.add_argument("action", choices=["size", "clear", "stats", "monitor"],
                   help="size: ready jobs; clear: delete them; stats; monitor: thresholds")
    q.add_argument("queue", type=queue_names, help="a queue (monitor: Q1,Q2)")
    q.add_argument("--max", type=count, default=1000, help="monitor: alert above N jobs")
    q.add_argument("--max-wait", type=non_negative, default=None,
                   help="monitor: alert when the oldest job waited more than S seconds")
    q.add_argument("--json", action="store_true", help="monitor: JSON output")
    q.set_defaults(handler=cmd_queue)
    _add_failed_parser(sub)

    r = sub.add_parser("restart-workers",
                       help="deploy signal: every worker finishes its job and restarts")
    r.set_defaults(handler=cmd_restart_workers)


def _add_failed_parser(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("failed", help="the failed-job store")
    fsub = f.add_subparsers(dest="action", required=True)
    fl = fsub.add_parser("list")
    fl.add_argument("--json", action="store_true", help="JSON output")
    fl.add_argument("--queue", type=queue_name, default=None, help="this queue only")
    fl.add_argument("--page", type=positive, default=1, help="page number, from 1")
    fl.add_argument("--per-page", type=positive, default=50, help="jobs per page")
    fr = fsub.add_parser("retry")
    fr.add_argument("ids", nargs="*", help="job ids, or 'all'")
    fr.add_argument("--queue", type=queue_name, default=None,
                    help="retry every failed job of this queue (with --range: its rows)")
    fr.add_argument("--range", dest="ranges", type=failed.row_ranges, action="append",
                    default=[], help="rows of `failed list`, e.g. 1-5 or 1-5,9")
    ff = fsub.add_parser("forget")
    ff.add_argument("id", help="failed job id")
    fsub.add_parser("flush")
    frb = fsub.add_parser("retry-batch", help="queue a batch's failed jobs again")
    frb.add_argument("id", help="batch id")
    fp = fsub.add_parser("prune")
    fp.add_argument("--hours", type=non_negative, required=True,
                    help="forget failed jobs older than this")
    f.set_defaults(handler=cmd_failed)


def cmd_dispatch(args: argparse.Namespace) -> int:
    from supervisor_q.jobs.registry import DEFAULT_QUEUE, dispatch, find_job

    try:
        positional, keywords = _job_arguments(args.args, args.kwargs)
    except ValueError as exc:
        print(f"supervisor-q dispatch: {exc}", file=sys.stderr)
        return 2
    try:
        args.name.encode("utf-8")
    except UnicodeEncodeError:  # bytes from the shell that were not UTF-8
        print(f"supervisor-q dispatch: the job name {shown(args.name)[:300]} is not UTF-8",
              file=sys.stderr)
        return 2
    connection = resolve_redis_url(args.redis_url)
    try:
        unregistered = find_job(args.name, connection) is None
        job_id = dispatch(args.name, *positional, queue=args.queue, delay=args.delay,
                          connection=connection, **keywords)
    except (NotSerialisable, ValueError) as exc:  # e.g. encrypted=True and no key here
        print(f"supervisor-q dispatch: {exc}", file=sys.stderr)
        return 2
    if unregistered and job_id is not None:  # said once it is so, not before a refusal
        print(f"supervisor-q dispatch: warning: no worker has registered "
              f"{shown(args.name)[:300]}: "
              f"queued on {args.queue or DEFAULT_QUEUE!r} with the program's options",
              file=sys.stderr)
    if job_id is None:
        print("supervisor-q dispatch: dropped: a unique job with this id is already queued",
              file=sys.stderr)
        return 1
    print(job_id)
    return 0


RESERVED_KWARGS = ("queue", "delay", "connection")  # dispatch()'s own options


def _job_arguments(args: str, kwargs: str) -> tuple[list, dict]:
    """--args and --kwargs as (list, dict); ValueError says what is wrong, in one line."""
    try:  # bytes from the shell that were not UTF-8 would be kept as lone surrogates
        args.encode("utf-8"), kwargs.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("--args/--kwargs are not UTF-8") from None
    try:
        positional = json.loads(args)
        keywords = json.loads(kwargs)
    except RecursionError:
        raise ValueError("--args/--kwargs are nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"--args/--kwargs must be JSON: {exc}") from None
    if isinstance(positional, dict) and isinstance(keywords, dict):
        positional, keywords = [], {**positional, **keywords}
    if not isinstance(positional, list) or not isinstance(keywords, dict):
        raise ValueError("--args is a JSON list, --kwargs a JSON object")
    clash = sorted(set(keywords) & set(RESERVED_KWARGS))
    if clash:
        raise ValueError(f"keyword argument(s) {', '.join(clash)} are reserved for dispatch "
                         f"options ({', '.join(RESERVED_KWARGS)}): use --queue/--delay")
    return positional, keywords


def cmd_queue(args: argparse.Namespace) -> int:
    if args.action != "monitor" and len(args.queue) != 1:
        print(f"supervisor-q queue: {args.action} takes one queue", file=sys.stderr)
        return 2
    queue = _queue(args)
    if args.action == "monitor":
        from supervisor_q.queue.monitor import cmd_monitor

        return cmd_monitor(queue, args)
    [name] = args.queue
    if args.action == "size":
        print(queue.size(name))
    elif args.action == "clear":
        print(f"cleared {queue.clear(name)} job(s) from {name}")
    else:
        length, waited = queue.load(name)
        stats = {**queue.counts(name), "oldest_wait": round(waited, 3)}
        print(json.dumps(stats))
    return 0


def cmd_failed(args: argparse.Namespace) -> int:
    return failed.cmd_failed(_queue(args), args)


def cmd_restart_workers(args: argparse.Namespace) -> int:
    from supervisor_q.queue.restart import signal_restart

    value = signal_restart(_queue(args).client)
    when = datetime.fromtimestamp(value).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    print(f"restart signal set at {when}; workers restart after their current job")
    return exitcodes.OK
