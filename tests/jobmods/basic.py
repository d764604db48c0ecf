"""Jobs the tests dispatch. Each records what it did in Redis list `results` of the
database named by SUPERVISOR_Q_REDIS_URL, so tests can observe real runs."""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import signal
import time

from supervisor_q import current_job, fail, job, release
from supervisor_q.jobs.dispatching import queue_for


def record(**fields: object) -> None:
    ctx = current_job()
    entry = {"pid": os.getpid(), "at": time.time(), **fields}
    if ctx is not None:
        entry.update(id=ctx.id, attempts=ctx.attempts, queue=ctx.queue)
    queue_for().client.rpush("results", json.dumps(entry))


@job(name="tests.noop")
def noop(*args: object, **kwargs: object) -> None:
    pass


@job(name="tests.record")
def record_job(value: object = None) -> None:
    record(value=value)


@job(name="tests.record_reservation")
def record_reservation(value: object = None) -> None:
    """Records how long its own reservation has left, by the server's clock."""
    from supervisor_q.queue.keys import QueueKeys

    ctx = current_job()
    client = queue_for().client
    deadline_ms = client.zscore(QueueKeys(ctx.queue).reserved, ctx.id)
    seconds, micros = client.time()
    record(value=value, reserved_for=deadline_ms / 1000 - (seconds + micros / 1e6))


@job(name="tests.boom")
def boom(value: object = None) -> None:
    record(value=value)
    raise RuntimeError("boom")


@job(name="tests.boom_limited", tries=10, max_exceptions=2)
def boom_limited() -> None:
    record()
    raise ValueError("always")


@job(name="tests.release_once", tries=3)
def release_once(delay: float = 0.0) -> None:
    ctx = current_job()
    record()
    if ctx is not None and ctx.attempts == 1:
        release(delay)


@job(name="tests.fail_now", tries=5)
def fail_now() -> None:
    record()
    fail("the job said no")


@job(name="tests.sleep")
def sleep_job(seconds: float, value: object = None) -> None:
    record(value=value, phase="start")
    time.sleep(seconds)
    record(value=value, phase="end")


@job(name="tests.sleep_short_timeout", timeout=1)
def sleep_short_timeout(seconds: float) -> None:
    record(phase="start")
    time.sleep(seconds)
    record(phase="end")


@job(name="tests.stuck_in_c", timeout=1)
def stuck_in_c() -> None:
    """Blocks SIGALRM and SIGTERM, then spins in C code that never checks for signals."""
    record(phase="start")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
    sum(itertools.repeat(1, 10**11))


@job(name="tests.exit_hard")
def exit_hard(code: int = 7) -> None:
    record()
    os._exit(code)


@job(name="tests.segfault")
def segfault() -> None:
    record()
    ctypes.string_at(0)


@job(name="tests.allocate")
def allocate(megabytes: int) -> None:
    global _hold
    _hold = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(_hold), 4096):
        _hold[i] = 1
    record(megabytes=megabytes)


_hold = bytearray()


@job(name="tests.retry_until")
def retry_until_job() -> None:
    record()
    raise RuntimeError("until")


@job(name="tests.backoff", tries=3, backoff=[1, 2])
def backoff_job() -> None:
    record()
    raise RuntimeError("again")


@job(name="tests.allocate_and_wait")
def allocate_and_wait(megabytes: int, seconds: float) -> None:
    record(phase="start")  # before the RSS grows: a kill may come at any moment after
    held = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(held), 4096):
        held[i] = 1
    record(phase="allocated")
    time.sleep(seconds)
    record(phase="end")
