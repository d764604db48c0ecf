"""Jobs for bench/master_figures.py: each records when it started, by wall clock, in Redis."""

from __future__ import annotations

import itertools
import signal
import time

from supervisor_q import job
from supervisor_q.jobs.dispatching import queue_for


def _mark(key: str) -> None:
    queue_for().client.rpush(key, repr(time.time()))


@job(name="bench.started")
def started(key: str = "bench:started") -> None:
    _mark(key)


@job(name="bench.sleep")
def sleep(seconds: float, key: str = "bench:done") -> None:
    time.sleep(seconds)
    _mark(key)


@job(name="bench.stuck_in_c", timeout=1)
def stuck_in_c() -> None:
    _mark("bench:stuck")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
    sum(itertools.repeat(1, 10**11))
