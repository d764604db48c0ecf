"""Jobs with declared @job options, for tests that dispatch them by name from a process
that never imports this module (the test process must not import it). Each records
what it did in the Redis list `results` (tests.jobmods.basic.record)."""

from __future__ import annotations

import signal
import time

from supervisor_q import events, job
from supervisor_q.jobs.registry import current_job
from tests.jobmods.basic import record


@job(name="declared.short", queue="declq", timeout=1, tries=1)
def short(seconds: float) -> None:
    record(kind="short", phase="start")
    time.sleep(seconds)
    record(kind="short", phase="end")


@job(name="declared.long", queue="declq", timeout=8, tries=1)
def long_job(seconds: float) -> None:
    """Runs longer than the worker's --timeout, within its own declared timeout."""
    record(kind="long", phase="start")
    time.sleep(seconds)
    record(kind="long", phase="end")


@job(name="declared.secret", queue="declq", encrypted=True)
def secret(value: str) -> None:
    record(kind="secret", value=value)


@job(name="declared.once", queue="declq", unique_for=60)
def once(value: str) -> None:
    record(kind="once", value=value)


@job(name="declared.once_by_key", queue="declq", unique_for=60, unique_id=lambda key: key)
def once_by_key(key: str) -> None:
    record(kind="once", value=key)


@job(name="declared.retry_for", queue="declq", tries=1, retry_for=600)
def retry_for() -> None:
    record(kind="retry_for")
    ctx = current_job()
    if ctx is not None and ctx.attempts < 3:
        raise RuntimeError("not yet")


@job(name="declared.retry_until_fn", queue="declq", tries=1,
     retry_until=lambda: time.time() + 600)
def retry_until_fn() -> None:
    record(kind="retry_until_fn")
    ctx = current_job()
    if ctx is not None and ctx.attempts < 3:
        raise RuntimeError("not yet")


@job(name="declared.hang", queue="declq", timeout=1, tries=1)
def hang(seconds: float = 60) -> None:
    """Ignores the worker's alarm and SIGTERM, so the master's hard timeout kills it."""
    record(kind="hang")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
    time.sleep(seconds)


@job(name="declared.hog", queue="declq", tries=1)
def hog(megabytes: int, seconds: float = 60) -> None:
    """Grows past the program's memory_hard, so the master kills it mid-job."""
    held = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(held), 4096):
        held[i] = 1
    record(kind="hog")
    time.sleep(seconds)


@job(name="declared.chain_catch", queue="catchq")
def chain_catch(failure: dict) -> None:
    record(kind="chain_catch", failure=failure)


@job(name="declared.batch_catch", queue="catchq")
def batch_catch(info: dict) -> None:
    record(kind="batch_catch", info=info)


@job(name="declared.batch_finally", queue="catchq")
def batch_finally(info: dict) -> None:
    record(kind="batch_finally", info=info)


@events.failing
def on_failing(event: events.JobEvent) -> None:
    record(kind="failing", job=event.name, job_id=event.id, reason=event.reason,
           job_attempts=event.attempts)
