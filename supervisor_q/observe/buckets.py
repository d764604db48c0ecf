"""Fleet-wide per-minute buckets in Redis, written by every master, read by anyone.

Layout: one hash per queue and hour, `sq:{<queue>}:metrics:<epoch hour>` (the queue's
hash tag, so a queue's buckets live on its node of a Cluster), with fields

    <epoch minute>:<job>:<outcome>     jobs finished with that outcome (counters.OUTCOMES)
    <epoch minute>:<job>:runtime_ms    sum of their runtimes
    <epoch minute>:<job>:started       jobs started
    <epoch minute>:<job>:wait_ms       sum of their waits (ready -> reserved)

incremented with HINCRBY (masters add up) and expiring `retention` seconds after the
hour ends. Memory does not grow with the number of jobs, only with queues x job names x
minutes kept. `read_series` and `fleet_totals` are the reader API (dashboard, `top`,
alerts). Imports queue.keys and queue.cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis

from supervisor_q.queue.cluster import is_cluster
from supervisor_q.queue.keys import PREFIX

SUMS = ("runtime_ms", "started", "wait_ms")  # bucket fields that are not outcomes


def bucket_key(queue: str, hour: int) -> str:
    return f"{PREFIX}:{{{queue}}}:metrics:{hour}"


def flush(client: redis.Redis, pending: Mapping[str, Mapping[str, int]],
          retention: float) -> None:
    """Add pending (queue -> field -> amount) to the buckets: one pipeline per queue on a
    Cluster (a queue's keys share one slot), one for all queues otherwise. Raises
    redis.RedisError; then nothing is known to be written and the caller keeps it all
    (an HINCRBY written twice after a lost reply overcounts; never undercounts twice)."""
    expire = int(retention) + 3600
    cluster = is_cluster(client)
    pipe = client.pipeline(transaction=False)
    for queue, fields in pending.items():
        hours: set[int] = set()
        for name, amount in fields.items():
            hour = int(name.split(":", 1)[0]) // 60
            hours.add(hour)
            pipe.hincrby(bucket_key(queue, hour), name, amount)
        for hour in hours:
            pipe.expire(bucket_key(queue, hour), expire)
        if cluster:
            pipe.execute()
            pipe = client.pipeline(transaction=False)
    if not cluster:
        pipe.execute()


@dataclass
class JobMinute:
    """One job name's counts in one minute, fleet-wide."""

    outcomes: dict[str, int] = field(default_factory=dict)  # outcome -> jobs
    runtime_ms: int = 0  # sum over the finished jobs
    started: int = 0
    wait_ms: int = 0  # sum over the started jobs

    @property
    def finished(self) -> int:
        return sum(self.outcomes.values())


@dataclass
class Minute:
    """One minute of one queue: `at` is the epoch minute (seconds = at * 60)."""

    at: int
    jobs: dict[str, JobMinute] = field(default_factory=dict)  # job name -> counts

    def outcome(self, name: str) -> int:
        return sum(j.outcomes.get(name, 0) for j in self.jobs.values())


def read_series(client: redis.Redis, queue: str, minutes: int,
                now: float | None = None) -> list[Minute]:
    """The last `minutes` minutes of queue (the current one included), oldest first, one
    Minute each (empty when nothing happened). now: epoch seconds (default: Redis' clock)."""
    if now is None:
        seconds, _ = client.time()
        now = float(seconds)
    last = int(now // 60)
    first = last - max(1, minutes) + 1
    pipe = client.pipeline(transaction=False)
    hours = range(first // 60, last // 60 + 1)
    for hour in hours:
        pipe.hgetall(bucket_key(queue, hour))
    series = {m: Minute(m) for m in range(first, last + 1)}
    for raw in pipe.execute():
        for name, value in raw.items():
            _add_field(series, name.decode(errors="replace"), int(value))
    return list(series.values())


def _add_field(series: dict[int, Minute], name: str, value: int) -> None:
    head, _, kind = name.rpartition(":")
    minute_text, _, job = head.partition(":")
    try:
        minute = series.get(int(minute_text))
    except ValueError:
        return
    if minute is None:
        return
    counts = minute.jobs.setdefault(job, JobMinute())
    if kind in SUMS:
        setattr(counts, kind, getattr(counts, kind) + value)
    else:
        counts.outcomes[kind] = counts.outcomes.get(kind, 0) + value


def fleet_totals(client: redis.Redis, queue: str, minutes: int,
                 now: float | None = None) -> dict[str, int]:
    """Jobs of queue per outcome over the last `minutes` minutes, fleet-wide, plus
    "started"; only what happened: e.g. {"done": 950, "failed": 3, "started": 960}."""
    totals: dict[str, int] = defaultdict(int)
    for minute in read_series(client, queue, minutes, now):
        for counts in minute.jobs.values():
            for outcome, count in counts.outcomes.items():
                totals[outcome] += count
            if counts.started:
                totals["started"] += counts.started
    return dict(totals)
