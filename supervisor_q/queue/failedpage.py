"""One page of the failed list, from the queues' `failed` zsets (id -> failed-at ms).

The list is every queue's failed jobs, newest first; ties (same millisecond) go by
queue name, then by id descending (as ZREVRANGE orders them). Row `start` is found
without reading the rows before it: one queue's page is one ZREVRANGE; over several
queues a binary search over failed-at times counts (ZCOUNT, O(log n) each) how many
rows are newer than a time, until it finds the time of row `start`; then each queue
hands its next `count` ids from its own offset and they are merged. That is one round
trip of one ZCOUNT per queue per halving of the time span (the span bounded first from
the queues' own rows: see _bounds), whatever the page. Each command names one key, so it
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
    offsets = [0] * len(keys) if start == 0 else _offsets(client, keys, start, sizes)
    ranges = _each(client, [("zrevrange", key, offset, offset + count - 1, True)
                            for key, offset in zip(keys, offsets, strict=True)])
    merged = heapq.merge(*[[(-score, index, rank, job_id)
                            for rank, (job_id, score) in enumerate(found)]
                           for index, found in enumerate(ranges)])
    rows = [(index, job_id) for _, index, _, job_id in merged]
    return rows[:count], total


def _offsets(client: Any, keys: list[str], start: int, sizes: list[Any]) -> list[int]:
    """How many of each queue's rows come before row start."""
    low, high = _bounds(client, keys, start, [int(n) for n in sizes])
    # The time t of row start: the highest t with more than start rows at t or newer.
    while low < high:
        middle = (low + high + 1) // 2
        if _newer(client, keys, middle) > start:
            low = middle
        else:
            high = middle - 1
    at = low
    counts = _each(client, [call for key in keys for call in
                            (("zcount", key, f"({at}", "+inf"), ("zcount", key, at, at))])
    newer, ties = counts[0::2], counts[1::2]
    skip = start - sum(int(n) for n in newer)  # rows at time `at` before row start
    offsets = []
    for above, tied in zip(newer, ties, strict=True):
        taken = min(skip, int(tied))  # ties go by queue name: earlier queues first
        skip -= taken
        offsets.append(int(above) + taken)
    return offsets


def _bounds(client: Any, keys: list[str], start: int, sizes: list[int]) -> tuple[int, int]:
    """Failed-at times between which row start's lies. Low: a queue's own row start
    (start + 1 rows are at least as new), the newest such; else the oldest row of all.
    High: some queue holds ceil((start + 1) / queues) of the first start + 1 rows, so
    the newest of the queues' rows at that rank is at least as new as row start."""
    share = -(-(start + 1) // len(keys)) - 1
    calls = []
    for key, size in zip(keys, sizes, strict=True):
        last = size - 1
        calls += [("zrevrange", key, min(start, last), min(start, last), True),
                  ("zrevrange", key, min(share, last), min(share, last), True)]
    found = _each(client, calls)
    lows, oldest, highs = [], [], []
    for n, size in enumerate(sizes):
        if size == 0:
            continue
        at_start, at_share = int(found[2 * n][0][1]), int(found[2 * n + 1][0][1])
        (lows if size > start else oldest).append(at_start)
        if size > share:
            highs.append(at_share)
    return (max(lows) if lows else min(oldest)), max(highs)


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
