"""Queue monitor: is a queue too long, or has its oldest job waited too long?

check_thresholds is pure (the master calls it on each monitor tick with the loads it
measured); cmd_monitor is `supervisor-q queue monitor Q1,Q2 --max N [--max-wait S]`,
which exits 1 when any queue is over, for cron and health checks. Imports backend.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from supervisor_q.queue.backend import RedisQueue

EXIT_OVER = 1


@dataclass(frozen=True)
class Thresholds:
    """A program's `monitor:` key: alert above max_size ready jobs, or when the oldest
    ready job has waited more than max_wait seconds (None = not checked)."""

    max_size: int | None = None
    max_wait: float | None = None


def check_thresholds(queue_loads: Mapping[str, tuple[int, float]],
                     thresholds: Thresholds) -> list[str]:
    """One message per breach, for loads {queue: (ready jobs, oldest wait seconds)}."""
    alerts: list[str] = []
    for name, (size, waited) in sorted(queue_loads.items()):
        if thresholds.max_size is not None and size > thresholds.max_size:
            alerts.append(f"queue {name} has {size} jobs waiting "
                          f"(over {thresholds.max_size})")
        if thresholds.max_wait is not None and waited > thresholds.max_wait:
            alerts.append(f"queue {name}: oldest job has waited {waited:.0f}s "
                          f"(over {thresholds.max_wait:g}s)")
    return alerts


def measure(queue: RedisQueue, names: list[str]) -> dict[str, tuple[int, float]]:
    return {name: queue.load(name) for name in names}


def cmd_monitor(queue: RedisQueue, args: argparse.Namespace) -> int:
    """Print each queue's load; exit 1 (and say which) when one is over a threshold."""
    names = list(args.queue)  # checked by the parser: valid queue names
    loads = measure(queue, names)
    alerts = check_thresholds(loads, Thresholds(args.max, args.max_wait))
    if getattr(args, "json", False):
        print(json.dumps({"queues": {n: {"size": s, "oldest_wait": round(w, 3)}
                                     for n, (s, w) in loads.items()}, "alerts": alerts}))
    else:
        for name, (size, waited) in loads.items():
            print(f"{name}: {size} waiting, oldest {waited:.1f}s")
        for alert in alerts:
            print(f"ALERT: {alert}", file=sys.stderr)
    return EXIT_OVER if alerts else 0
