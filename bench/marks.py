"""Shared helpers for the benchmark job modules: one lazily made Redis client per
process (never across a fork) for the few marker jobs that record times.

Every job module (bench/sq_jobs.py, bench/peers/*_jobs.py) defines the same four
jobs: noop(), mark(key) (RPUSH key time.time()), sleep10() (time.sleep(0.01)) and
lat(dispatched) (RPUSH bench:lat time.time() - dispatched). Only mark and lat touch
Redis, so a no-op job costs each system exactly its own overhead.
"""

from __future__ import annotations

import os
import time

import redis

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
_client: list = [None, 0]


def client() -> redis.Redis:
    if _client[1] != os.getpid():
        _client[0] = redis.Redis.from_url(URL)
        _client[1] = os.getpid()
    return _client[0]


def mark(key: str) -> None:
    client().rpush(key, repr(time.time()))


def lat(dispatched: float) -> None:
    client().rpush("bench:lat", repr(time.time() - dispatched))


def sleep10() -> None:
    time.sleep(0.01)
