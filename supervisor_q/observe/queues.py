"""Per-queue gauges for /metrics: ready, delayed, reserved, failed and the oldest wait,
measured on the master's slow tick (never during a scrape) for the queues of its worker
programs, at most MAX_QUEUES of them per refresh. Reuses queue/inspecting.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from supervisor_q.queue.backend import RedisQueue

MAX_QUEUES = 500


@dataclass(frozen=True)
class QueueGauges:
    counts: dict[str, int]  # ready, delayed, reserved, failed
    oldest_wait: float  # seconds the oldest ready job has waited


def measure(queue: RedisQueue, names: Iterable[str]) -> dict[str, QueueGauges]:
    """Gauges of each queue in names (sorted, bounded); raises redis.RedisError."""
    found = {}
    for name in sorted(set(names))[:MAX_QUEUES]:
        counts = queue.counts(name)
        _, oldest = queue.load(name)
        found[name] = QueueGauges(counts, oldest)
    return found
