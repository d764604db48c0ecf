"""One page of the failed list, from the queues' `failed` zsets (id -> failed-at ms).

The list is every queue's failed jobs, newest first; ties (same millisecond) go by
queue name, then by id descending (as ZREVRANGE orders them). Row `start` is found
without reading the rows before it: one queue's page is one ZREVRANGE; over several
queues a binary search over failed-at times counts (ZCOUNT, O(log n) each) how many
rows are newer than a time, until it finds the time of row `start`; then each queue
hands its next `count` ids from its own offset and they are merged. That is about 45
rounds of one ZCOUNT per queue, whatever the page. Each command names one key, so it
runs on Redis Cluster as on one server. Imports nothing else from the package.
"""

from __future__ import annotations

import heapq
from typing import Any

Row = tuple[int, bytes]  # (index of the queue's key in the list given, job id)


def page_rows(client: Any, keys: list[str], start: int, count: int) -> tuple[list[Row], int]:
    """Rows start .. start+count-1 of the failed list over the zsets keys, and the
    number of rows in all."""
    sizes = _each(client, [("zcard", key) for key in keys])
    total = sum(int(n) for n in sizes)
    if start >= total or count <= 0:
        return [], total
    if len(keys) == 1:
        ids = client.zrevrange(keys[0], start, start + count - 1)
        return [(0, job_id) for job_id in ids], total
    offsets = _offsets(client, keys, start)
    ranges = _each(client, [("zrevrange", key, offset, offset + count - 1, True)
                            for key, offset in zip(keys, offsets, strict=True)])
    merged = heapq.merge(*[[(-score, index, rank, job_id)
                            for rank, (job_id, score) in enumerate(found)]
                           for index, found in enumerate(ranges)])
    rows = [(index, job_id) for _, index, _, job_id in merged]
    return rows[:count], total


def _offsets(client: Any, keys: list[str], start: int) -> list[int]:
    """How many of each queue's rows come before row start."""
    tops = _each(client, [("zrevrange", key, 0, 0, True) for key in keys])
    lows = _each(client, [("zrange", key, 0, 0, True) for key in keys])
    high = int(max(found[0][1] for found in tops if found))
    low = int(min(found[0][1] for found in lows if found))
    # The time t of row start: the highest t with more than start rows at t or newer.
    while low < high:
        middle = (low + high + 1) // 2
        if _newer(client, keys, middle) > start:
            low = middle
        else:
            high = middle - 1
    at = low
    newer = _each(client, [("zcount", key, f"({at}", "+inf") for key in keys])
    ties = _each(client, [("zcount", key, at, at) for key in keys])
    skip = start - sum(int(n) for n in newer)  # rows at time `at` before row start
    offsets = []
    for above, tied in zip(newer, ties, strict=True):
        taken = min(skip, int(tied))  # ties go by queue name: earlier queues first
        skip -= taken
        offsets.append(int(above) + taken)
    return offsets


def _newer(client: Any, keys: list[str], at: int) -> int:
    """How many rows failed at `at` ms or later."""
    return sum(int(n) for n in _each(client, [("zcount", key, at, "+inf") for key in keys]))


def _each(client: Any, calls: list[tuple]) -> list[Any]:
    """Each call (method name, arguments) in one pipeline: one round trip (per node on
    Redis Cluster, whose pipeline splits the commands by slot)."""
    pipe = client.pipeline(transaction=False)
    for name, *args in calls:
        if name in ("zrevrange", "zrange") and len(args) == 4:
            getattr(pipe, name)(*args[:3], withscores=args[3])
        else:
            getattr(pipe, name)(*args)
    return list(pipe.execute())
