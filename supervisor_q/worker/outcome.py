"""What happens to a job after an attempt that did not succeed: retry later or fail.

Pure functions of (limits, attempts, exceptions, now), shared by the worker (a job
raised or timed out) and the handback (the master or the `work` guard killed the
child running a job), and the failed-store record both write. Imports payload and
backend (the Reserved type) only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import Reserved
from supervisor_q.queue.payload import Payload

if TYPE_CHECKING:
    from supervisor_q.jobs.registry import JobOptions


@dataclass(frozen=True)
class Limits:
    """A job's retry limits: the payload's own values, else the program's."""

    tries: int
    backoff: tuple[int, ...]
    max_exceptions: int | None
    retry_until: float | None
    fail_on_timeout: bool
    timeout: float


@dataclass(frozen=True)
class Decision:
    release: bool  # True: run again after delay; False: fail with reason
    delay: float = 0.0
    reason: str = ""


# The limits of payloads that carry no option of their own (most), per declared options
# (frozen, looked up by identity: each entry keeps its options object alive, so no other
# object can take its id while the entry exists) and program defaults.
_plain: dict[tuple[int, int, tuple[int, ...], float], tuple[JobOptions | None, Limits]] = {}
PLAIN_KEPT = 256


def resolve_limits(payload: Payload | None, *, tries: int, backoff: tuple[int, ...],
                   timeout: float, declared: JobOptions | None = None) -> Limits:
    """The payload's options, else the job's declared @job options (a payload dispatched
    by name where the job was unknown carries none), else the program defaults."""
    if (payload is not None and payload.tries is None and payload.timeout is None
            and payload.retry_until is None and payload.max_exceptions is None
            and not payload.backoff and not payload.fail_on_timeout
            and (declared is None or declared.retry_for is None)):
        # Then none of the payload counts (a declared retry_for, from its dispatch, would).
        key = (id(declared), tries, backoff, timeout)
        found = _plain.get(key)
        if found is None:
            if len(_plain) >= PLAIN_KEPT:
                _plain.clear()
            found = _plain[key] = (declared, _resolve(payload, tries, backoff, timeout,
                                                      declared))
        return found[1]
    return _resolve(payload, tries, backoff, timeout, declared)


def _resolve(payload: Payload | None, tries: int, backoff: tuple[int, ...], timeout: float,
             declared: JobOptions | None) -> Limits:
    if payload is None:
        return Limits(tries, backoff, None, None, False, timeout)
    d = declared
    if d is not None:
        tries = d.tries if d.tries is not None else tries
        backoff = d.backoff or backoff
        timeout = d.timeout if d.timeout is not None else timeout
    max_exceptions, retry_until = payload.max_exceptions, payload.retry_until
    if d is not None:
        if max_exceptions is None:
            max_exceptions = d.max_exceptions
        if retry_until is None:
            retry_until = _declared_deadline(d, payload)
    return Limits(
        tries=payload.tries if payload.tries is not None else tries,
        backoff=tuple(payload.backoff) if payload.backoff else backoff,
        max_exceptions=max_exceptions,
        retry_until=retry_until,
        fail_on_timeout=payload.fail_on_timeout or bool(d and d.fail_on_timeout),
        timeout=payload.timeout if payload.timeout is not None else timeout,
    )


def _declared_deadline(declared: JobOptions, payload: Payload) -> float | None:
    """A declared retry_for counts from the payload's dispatch; a callable retry_until
    is evaluated at dispatch only, so a payload without one has none."""
    if declared.retry_for is not None:
        return payload.dispatched_at + declared.retry_for
    value = declared.retry_until
    return None if callable(value) else value


def backoff_delay(backoff: tuple[int, ...], attempts: int) -> float:
    """Seconds before retry number `attempts` (1-based); the last value repeats."""
    if not backoff:
        return 0.0
    return float(backoff[min(max(attempts, 1), len(backoff)) - 1])


def out_of_attempts(limits: Limits, attempts: int, now: float) -> str | None:
    """Why no further attempt may run, or None. retry_until beats tries (as in Laravel)."""
    if limits.retry_until is not None:
        if now >= limits.retry_until:
            return "retry_until deadline passed"
        return None
    if attempts >= limits.tries:
        return f"max attempts ({limits.tries}) reached"
    return None


def after_exception(limits: Limits, attempts: int, exceptions: int, now: float,
                    error: str) -> Decision:
    """The job raised; exceptions already counts this one."""
    if limits.max_exceptions is not None and exceptions >= limits.max_exceptions:
        return Decision(False, reason=f"max exceptions ({limits.max_exceptions}) reached: {error}")
    stop = out_of_attempts(limits, attempts, now)
    if stop:
        return Decision(False, reason=f"{stop}: {error}")
    return Decision(True, delay=backoff_delay(limits.backoff, attempts))


def after_timeout(limits: Limits, attempts: int, now: float) -> Decision:
    reason = f"timeout: ran longer than {limits.timeout:g}s"
    if limits.fail_on_timeout:
        return Decision(False, reason=reason)
    stop = out_of_attempts(limits, attempts, now)
    if stop:
        return Decision(False, reason=f"{reason} ({stop})")
    return Decision(True, delay=backoff_delay(limits.backoff, attempts))


def after_lost_worker(limits: Limits, attempts: int, now: float, how: str) -> Decision:
    """The child running the job died (killed, crashed, out of memory)."""
    stop = out_of_attempts(limits, attempts, now)
    if stop:
        return Decision(False, reason=f"{how} ({stop})")
    return Decision(True, delay=backoff_delay(limits.backoff, attempts))


def before_run(limits: Limits, attempts: int, now: float) -> str | None:
    """A job reserved again after its worker vanished may already be out of attempts."""
    if limits.retry_until is not None:
        return "retry_until deadline passed" if now >= limits.retry_until else None
    if attempts > limits.tries:
        return (f"max attempts ({limits.tries}) exceeded (earlier attempts were released "
                "or their worker was lost mid-job)")
    return None


def failed_record(job: Reserved, reason: str, trace: str | None) -> dict:
    """The failed-store record for a job (its raw payload kept for `failed retry`). The
    arguments live only in that payload: the store's readers add args and kwargs from it
    (queue/failed.py with_arguments)."""
    body = payloads.peek(job.payload)
    return {
        "id": job.id, "job": body.get("job"), "queue": job.queue, "attempts": job.attempts,
        "failed_at": time.time(), "reason": reason, "exception": trace,
        "payload": job.payload,
    }
