"""`supervisor-q top` (parsed in top.py, which imports this only when it runs): a live
terminal view (rich) of programs, children and their jobs, and queues with depth, oldest
wait and rates. Refreshes every second; `q` or Ctrl-C quits (stdin in cbreak mode only
while it is a TTY, restored on the way out); `--once` prints one frame. The local master
comes from its control socket; `--all` reads the fleet registry in Redis. Queue depths
come from Redis, rates from the per-minute buckets (observe/buckets.py): jobs per minute
over the last RATE_MINUTES minutes.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import termios
import time
import tty
from collections import Counter
from typing import Any

import redis
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from supervisor_q import paths
from supervisor_q.ctl.protocol import ControlError, request

REFRESH = 1.0  # seconds between two frames
RATE_MINUTES = 5  # rates: the average over the last five minutes
MAX_CHILDREN = 200  # rows of the children table (the rest: one "... more" line)


def cmd_top(args: argparse.Namespace) -> int:
    try:
        frame = Frame(args)
        first = frame.render()
    except ControlError as exc:
        print(f"supervisor-q top: {exc}", file=sys.stderr)
        return 1
    if args.once:
        width = None if sys.stdout.isatty() else 160
        Console(width=width).print(first)
        return 0
    return live(frame, first)


def live(frame: Frame, first: RenderableType) -> int:
    """Redraw every REFRESH seconds until `q` (or Ctrl-C); the terminal as it was."""
    saved = termios.tcgetattr(sys.stdin.fileno()) if sys.stdin.isatty() else None
    try:
        if saved is not None:
            tty.setcbreak(sys.stdin.fileno())
        with Live(first, auto_refresh=False, screen=sys.stdout.isatty()) as view:
            while not quit_pressed(REFRESH, saved is not None):
                try:
                    view.update(frame.render(), refresh=True)
                except (ControlError, redis.RedisError) as exc:
                    view.update(Text(f"not answering: {exc}"), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
    return 0


def quit_pressed(timeout: float, interactive: bool) -> bool:
    """Wait up to timeout for a key; True for q or Q (or stdin at its end)."""
    if not interactive:
        time.sleep(timeout)
        return False
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sys.stdin], [], [], left)
        if ready:
            key = os.read(sys.stdin.fileno(), 64)
            if not key or b"q" in key.lower():
                return True
    return False


class Frame:
    """What one frame shows, gathered afresh at each render."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.client: Any = None  # a redis.Redis, opened on first use

    def redis(self) -> Any:
        if self.client is None:
            from supervisor_q.queue.backend import connect

            url = paths.resolve_redis_url(self.args.redis_url)
            self.client = connect(url, socket_timeout=2)
        return self.client

    def masters(self) -> list[dict[str, Any]]:
        """Status dicts: the local master's, or every live master's (--all)."""
        if not self.args.all:
            return [request(paths.control_socket(self.args.socket), "status", timeout=5)]
        from supervisor_q.fleet.registry import members

        return [m.as_json() for m in members(self.redis()) if m.state == "alive"]

    def render(self) -> RenderableType:
        masters = self.masters()
        queues = sorted({q for m in masters for p in m.get("programs", []) for q in p["queues"]})
        head = Text(f"supervisor-q top - {time.strftime('%H:%M:%S')} - "
                    f"{len(masters)} master(s) - q quits", style="bold")
        alerts = [Text(f"ALERT {_where(m, len(masters) > 1)}{text}", style="bold red")
                  for m in masters for text in m.get("master", m).get("alerts", [])]
        return Group(head, *alerts, programs_table(masters), children_table(masters),
                     self.queues_table(queues))

    def queues_table(self, names: list[str]) -> RenderableType:
        try:
            rows = [self.queue_row(name) for name in names]
        except (redis.RedisError, paths.BadRedisUrl) as exc:
            return Text(f"queues: Redis unavailable: {' '.join(str(exc).split())[:200]}")
        table = Table(title="queues", title_justify="left")
        for column in ("queue", "ready", "delayed", "reserved", "failed", "oldest wait",
                       f"done/min ({RATE_MINUTES}m)", f"failed/min ({RATE_MINUTES}m)"):
            table.add_column(column, justify="left" if column == "queue" else "right")
        for row in rows:
            table.add_row(*row)
        return table

    def queue_row(self, name: str) -> list[str]:
        from supervisor_q.observe.buckets import fleet_totals
        from supervisor_q.queue.backend import RedisQueue

        queue = RedisQueue(self.redis())
        counts = queue.counts(name)
        _, oldest = queue.load(name)
        totals = fleet_totals(self.redis(), name, RATE_MINUTES)
        return [name, *(str(counts.get(k, 0)) for k in ("ready", "delayed", "reserved",
                                                        "failed")),
                f"{oldest:.1f}s", f"{totals.get('done', 0) / RATE_MINUTES:.1f}",
                f"{totals.get('failed', 0) / RATE_MINUTES:.1f}"]


def _where(master: dict[str, Any], many: bool) -> str:
    return f"{master.get('host', '?')}:{master.get('pid', '?')} " if many else ""


def programs_table(masters: list[dict[str, Any]]) -> Table:
    table = Table(title="programs", title_justify="left")
    for column in ("program", "kind", "state", "target", "processes"):
        table.add_column(column)
    for master in masters:
        for program in master.get("programs", []):
            states = Counter(p["state"] for p in program["processes"])
            summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
            paused = " (paused)" if program.get("paused") else ""
            table.add_row(_where(master, len(masters) > 1) + program["name"],
                          program["kind"], program["state"] + paused,
                          f"{program['target']} ({program['target_reason']})", summary)
    return table


def children_table(masters: list[dict[str, Any]]) -> RenderableType:
    table = Table(title="children", title_justify="left")
    for column in ("process", "pid", "state", "uptime", "job", "queue", "runtime"):
        table.add_column(column)
    rows = [(master, p) for master in masters for program in master.get("programs", [])
            for p in program["processes"]]
    for master, p in rows[:MAX_CHILDREN]:
        job = p.get("job") or {}
        table.add_row(_where(master, len(masters) > 1) + p["name"], str(p["pid"] or "-"),
                      p["state"], f"{p['uptime']:.0f}s",
                      f"{job['name']} {job['id']}" if job else "idle",
                      job.get("queue", ""), f"{job['runtime']:.1f}s" if job else "")
    if len(rows) > MAX_CHILDREN:
        return Group(table, Text(f"... {len(rows) - MAX_CHILDREN} more"))
    return table
