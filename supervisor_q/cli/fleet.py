"""CLI commands over the fleet registry: `status --all`, `pause/continue --queue Q`,
`scale PROGRAM N --all | --master ID` (through each master's inbox).

They read and write Redis only (no control socket), so they work from any host."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from supervisor_q.paths import resolve_redis_url
from supervisor_q.queue.ids import shown
from supervisor_q.queue.keys import check_queue_name

# C0/C1 controls and the Unicode line/paragraph separators: a value held in Redis may
# carry them (anyone who can write Redis can write the fleet keys), and printed raw
# they would split or forge lines of `status --all`.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def queue_arg(value: str) -> str:
    """argparse type of `pause/continue --queue`: the rule every other --queue follows."""
    try:
        return check_queue_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def printable(value: Any) -> Any:
    """value with every control character in its strings (keys and nested values
    included) shown as an escape (\\n, \\x1b, \\u2028), so one value stays on one line."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value


def _client(args: argparse.Namespace):  # noqa: ANN202 - a redis.Redis
    from supervisor_q.queue.backend import connect

    return connect(resolve_redis_url(args.redis_url), socket_timeout=10)


def cmd_status_all(args: argparse.Namespace, format_status: Callable[[dict], str]) -> int:
    """Every live master of the fleet (and those gone lately), from Redis."""
    from supervisor_q.fleet.registry import members

    found = [m.as_json() for m in members(_client(args))]
    if args.json:
        print(json.dumps({"masters": found}, indent=1))
    else:
        print(format_fleet([printable(m) for m in found], format_status))
    return 0


def format_fleet(masters: list[dict[str, Any]], format_status: Callable[[dict], str]) -> str:
    """One block per master: its head line, then its programs as `status` shows them."""
    if not masters:
        return "no masters in the fleet"
    blocks = []
    for m in masters:
        started = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m["started_at"]))
                   if isinstance(m.get("started_at"), int | float) else "?")
        if m["state"] == "gone" or "programs" not in m:
            who = (f" (host {m['host']}, pid {m.get('pid', '?')}, started {started})"
                   if m.get("host") else "")
            blocks.append(f"master {m['id']} GONE{who}")
            continue
        paused = ", ".join(m.get("paused_queues") or []) or "none"
        error = f" redis error: {m['redis_error']}" if m.get("redis_error") else ""
        head = (f"master {m['id']} alive (host {m.get('host', '?')}, pid {m.get('pid', '?')}, "
                f"version {m.get('version', '?')}, started {started}) "
                f"paused queues: {paused}{error}")
        try:
            body = format_status(m)
        except (KeyError, TypeError, ValueError, AttributeError):  # written by anyone
            body = "(its heartbeat is malformed: see status --all --json)"
        blocks.append(head + "\n" + "\n".join("  " + line for line in body.splitlines()))
    return "\n".join(blocks)


def cmd_pause_queue(args: argparse.Namespace) -> int:
    """pause/continue --queue Q: every worker of Q on every host, through Redis."""
    from supervisor_q.queue.pauses import pause, resume

    queue = args.queue  # checked by queue_arg
    client = _client(args)
    if args.control == "pause":
        changed = pause(client, queue)
        print(f"queue {queue}: paused on every host" + ("" if changed else " (already)"))
    else:
        changed = resume(client, queue)
        print(f"queue {queue}: continued on every host" + ("" if changed else
                                                          " (was not paused)"))
    return 0


def cmd_scale_fleet(args: argparse.Namespace) -> int:
    """scale PROGRAM N on every live master (--all) or on one (--master ID), via Redis.
    A master without that program logs the refusal and changes nothing."""
    from supervisor_q.fleet import inbox
    from supervisor_q.fleet.registry import members

    client = _client(args)
    live = [m.id for m in members(client) if m.state == "alive"]
    targets = live if args.all else [args.master]
    if args.master and args.master not in live:
        print(f"supervisor-q scale: no live master {args.master!r} "
              "(see `supervisor-q status --all`)", file=sys.stderr)
        return 1
    for master_id in targets:
        inbox.send(client, master_id, "scale", program=args.program, numprocs=args.numprocs)
    print(f"{shown(args.program)[:300]}: scale to {args.numprocs} sent to {len(targets)} master(s)")
    return 0
