"""Settle a job whose worker died under it: release it for another attempt or fail it.

The master calls this right after reaping a child, and the `supervisor-q work` guard
after killing its worker (boot.py), so a killed job does not wait for its reservation
to expire. Every call names the attempt the worker reported, so a job that another
worker has reserved since is never touched. No job code runs here: a failed job's
callbacks (failing events, chain catch, batch failure, unique unlock) are queued for
a worker of the job's queue (lifecycle.failed_elsewhere). Imports outcome, lifecycle,
registry (declared options) and the queue; never the master.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import redis

from supervisor_q.jobs.registry import declared_job
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, Reserved
from supervisor_q.queue.faults import describe
from supervisor_q.worker import lifecycle, outcome

if TYPE_CHECKING:
    from supervisor_q.queue.payload import Payload

log = logging.getLogger("supervisor_q.handback")


@dataclass(frozen=True)
class LostJob:
    """The job a worker was running when it died, as its start report named it."""

    id: str  # "" when the start report was unreadable
    queue: str
    name: str = ""  # for the log only


@dataclass(frozen=True)
class Handback:
    """A job whose worker died under it: settle() releases or fails it."""

    job: LostJob
    attempts: int  # the attempt the worker reported
    why: str  # "timeout", "memory", "lost" (died), "stopped" (shut down while busy) or
    # "fenced" (stopped itself: its master's fleet lease ran out; worker/fence.py) or
    # "idle" (killed by a signal with no job running: what it held was not started)
    how: str  # "killed by signal 9", "timeout", ...
    holder: str = ""  # fenced: "<master id>|<pid>.", the prefix of its reservations' tokens
    sweep: bool = False  # then hand back what else the holder held (killed: not started)


class Program(Protocol):
    """The settings settle reads: a WorkerProgram's or a WorkerSettings'."""

    tries: int
    backoff: tuple[int, ...]
    timeout: float


def settle(queue: RedisQueue, program: Program, back: Handback) -> str:
    """Release or fail the job of back; returns what was done, for the log."""
    try:
        return attempt(queue, program, back)
    except redis.RedisError as exc:
        what = f"job {payloads.loggable(back.job.id)}" if back.job.id else "its held jobs"
        log.warning("%s: cannot settle now (%s); the reservations expire instead", what,
                    describe(exc))
        return "left to reservation expiry"


def attempt(queue: RedisQueue, program: Program, back: Handback) -> str:
    """settle(), raising a RedisError for the caller to decide (the master tries again
    once Redis answers). Safe to repeat: it acts only on the attempt back names."""
    job = back.job
    if back.why in ("fenced", "idle"):  # every job it held, by token: none another holds now
        held = queue.hand_back_held(back.holder)
        return f"{back.why}: {held} job(s) it held handed back, attempt given back"
    if not job.id:  # its start report was unreadable: the reservation brings it back
        return "left to reservation expiry (unreadable start report)"
    done = _settle_running(queue, program, back)
    if back.sweep and back.holder:  # the running job is settled: not held by it any more
        held = queue.hand_back_held(back.holder)
        if held:
            done += f"; {held} other job(s) it held handed back, attempt given back"
    return done


def _settle_running(queue: RedisQueue, program: Program, back: Handback) -> str:
    job = back.job
    found = queue.reserved_job(job.queue, job.id)
    if found is None:
        return "already settled"
    raw, attempts, exceptions = found
    if attempts != back.attempts:
        return "a later attempt holds it"
    # The same attempt number is not enough: a fleet claim hands a job back with its
    # attempt given back. With the dead worker's holder name, its token is adopted, so
    # the release or fail below does nothing unless that very reservation still holds it.
    if back.holder and not queue.adopt(job.queue, job.id, back.holder):
        return "another worker holds it (handed back meanwhile)"
    try:
        return _settle_held(queue, program, back, raw, attempts, exceptions)
    finally:
        queue.forget(job.queue, job.id)


def _settle_held(queue: RedisQueue, program: Program, back: Handback, raw: str,
                 attempts: int, exceptions: int) -> str:
    job = back.job
    if back.why == "stopped":
        queue.release(job.queue, job.id, 0, expected_attempts=attempts, undo_attempt=True)
        return "handed back (shutdown)"
    decoded = _decode(raw)
    decision = _decision(queue, program, back, decoded, attempts)
    if decision.release:
        queue.release(job.queue, job.id, decision.delay, expected_attempts=attempts)
        return f"released for attempt {attempts + 1} in {decision.delay:g}s"
    reserved = Reserved(job.queue, job.id, raw, attempts, exceptions, 0.0)
    _fail(queue, reserved, decoded, decision.reason)
    return f"failed: {decision.reason}"


def _decode(raw: str) -> Payload | None:
    try:
        return payloads.decode(raw)
    except payloads.MalformedPayload:
        return None


def _decision(queue: RedisQueue, program: Program, back: Handback, decoded: Payload | None,
              attempts: int) -> outcome.Decision:
    """Retry or fail, by the job's limits (its payload's, its declared ones, the program's)."""
    declared = declared_job(decoded.job, queue) if decoded is not None else None
    limits = outcome.resolve_limits(decoded, tries=program.tries, backoff=program.backoff,
                                    timeout=program.timeout,
                                    declared=declared.options if declared else None)
    now = time.time()
    if back.why == "timeout":
        return outcome.after_timeout(limits, attempts, now)
    if back.why == "memory":
        return outcome.after_lost_worker(
            limits, attempts, now, f"memory: worker passed memory_hard "
            f"({getattr(program, 'memory_hard', 0)} MB) and was killed")
    return outcome.after_lost_worker(limits, attempts, now, f"worker {back.how}")


def _fail(queue: RedisQueue, job: Reserved, decoded: Payload | None, reason: str) -> None:
    """Move the job to the failed store; what the dead worker could not do (failing
    events, chain catch, batch failure, unique unlock) is left to a worker of the
    job's queue."""
    if queue.fail(job.queue, job.id, outcome.failed_record(job, reason, None),
                  expected_attempts=job.attempts):
        if decoded is not None:
            lifecycle.failed_elsewhere(queue, job.queue, job.payload, reason, job.attempts)
