"""Job deadlines in the master: a job past its timeout gets SIGTERM to its child's
group, then SIGKILL (the job stuck in C code that ignores the worker's own alarm).
Called from the arbiter loop through `Pool.enforce_deadlines` and `Pool.next_deadline`.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

from supervisor_q.master.process import ChildProcess, CurrentJob, RunRecord, State
from supervisor_q.queue.payload import loggable

if TYPE_CHECKING:
    from supervisor_q.master.pool import Pool

log = logging.getLogger("supervisor_q.pool")

TERM_GRACE = 0.5  # after a job's deadline: SIGTERM to the child's group
KILL_GRACE = 0.5  # ... and SIGKILL this much later if it is still there


def enforce(pool: Pool, now: float) -> None:
    """A job past its deadline: SIGTERM the group, then SIGKILL (the C-code case)."""
    for child, job, run in _watched(pool):
        if _term_due(job, run, now):
            log.warning("%s pid=%s: job %s (%s) passed its timeout: SIGTERM", child.name,
                        child.pid, loggable(job.id), loggable(job.name))
            run.kill_reason = "timeout"
            run.term_sent_at = now
            pool.signal(child, signal.SIGTERM)
        elif run.term_sent_at is not None and now >= run.term_sent_at + KILL_GRACE:
            log.warning("%s pid=%s: still running job %s: SIGKILL", child.name, child.pid,
                        loggable(job.id))
            run.term_sent_at = float("inf")  # once
            pool.signal(child, signal.SIGKILL)


def overdue(pool: Pool, now: float) -> list[ChildProcess]:
    """The children whose job enforce() would SIGTERM now: their report pipes are read
    first (a finish may wait there: a busy child's pipe rests between reads, and a
    master stopped a while reads late), so a job that ended in time is not killed."""
    return [child for child, job, run in _watched(pool) if _term_due(job, run, now)]


def _watched(pool: Pool) -> Iterator[tuple[ChildProcess, CurrentJob, RunRecord]]:
    """The children running a job with a deadline that a signal can still reach."""
    for child in pool.children:
        job = child.job
        if job is not None and job.deadline is not None and child.signallable:
            yield child, job, pool.run_of(child)


def _term_due(job: CurrentJob, run: RunRecord, now: float) -> bool:
    """Past its deadline and grace, and not sent SIGTERM yet."""
    return now >= job.deadline + TERM_GRACE and run.term_sent_at is None  # (_watched: set)


def earliest(pool: Pool) -> float | None:
    """The earliest moment `enforce` or the pool's tick has something to do."""
    moments = []
    for child in pool.children:
        run = pool.run_of(child)
        if child.job is not None and child.job.deadline is not None:
            if run.term_sent_at is None:
                moments.append(child.job.deadline + TERM_GRACE)
            elif run.term_sent_at != float("inf"):
                moments.append(run.term_sent_at + KILL_GRACE)
        if run.stop_deadline is not None:
            moments.append(run.stop_deadline)
        if run.retry_at is not None:
            moments.append(run.retry_at)
        if child.state is State.STARTING and child.started_at is not None:
            moments.append(child.started_at + pool.program.startsecs)
    return min(moments) if moments else None
