"""Job middleware: objects that wrap a job's run, outermost first.

A middleware is any object with `handle(call: Call, proceed: Callable[[], None])`:
call `proceed()` to run the rest (inner middleware, then the job), or do not, to
skip the run; `release_for_limit(delay)` puts the job back without spending an
attempt. Skip deletes a job without running it. The controls (overlap, throttle,
funnel, throttles-exceptions) live in controls.py, unique locks in unique.py.
Imports context, backend, keys and payload (the Job type only for type checking).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from supervisor_q.jobs.context import ReleaseJob, current_job
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.keys import limit_key
from supervisor_q.queue.payload import Payload, loggable

if TYPE_CHECKING:
    from supervisor_q.jobs.registry import Job

log = logging.getLogger("supervisor_q.middleware")

DEFAULT_TIMEOUT = 60.0  # lock lifetime base when neither job nor payload sets a timeout
LOCK_MARGIN = 5.0  # seconds a lock outlives the job's timeout, like a reservation


@dataclass(frozen=True)
class Call:
    """One run of one job, as middleware sees it."""

    job: Job
    payload: Payload
    queue: RedisQueue

    @property
    def args(self) -> list[Any]:
        return self.payload.args

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.payload.kwargs

    @property
    def token(self) -> str:
        """This run's lock token: the job id (a retry of the same job holds the same)."""
        return self.payload.id

    def lock_seconds(self) -> float:
        """How long a lock taken for this run may live if its holder dies."""
        timeout = self.payload.timeout or self.job.options.timeout or DEFAULT_TIMEOUT
        return float(timeout) + LOCK_MARGIN


class Middleware(Protocol):
    def handle(self, call: Call, proceed: Callable[[], None]) -> None: ...


Key = str | Callable[..., Any] | None


def resolve_key(key: Key, call: Call, kind: str) -> str:
    """sq:<kind>:<key>: key is a string, a function of the job's arguments, or None for
    one key per job name."""
    if key is None:
        value: Any = call.job.name
    elif callable(key):
        value = key(*call.args, **call.kwargs)
    else:
        value = key
    return limit_key(kind, value)


def release_for_limit(call: Call, delay: float) -> None:
    """Put the running job back after delay seconds, not counting this attempt
    (waiting for a lock or a rate is not a failure), and stop the run here."""
    ctx = current_job()
    job_id = ctx.id if ctx is not None else call.payload.id
    call.queue.release(call.payload.queue, job_id, delay, undo_attempt=True)
    # The worker's own release finds the job no longer reserved and does nothing twice.
    raise ReleaseJob(delay)


Condition = bool | Callable[..., Any]


@dataclass(frozen=True)
class Skip:
    """Middleware: Skip.when(cond) / Skip.unless(cond) - when the job should be skipped,
    it is deleted without running: not failed, not retried (it counts as done, so its
    chain and batch go on, as Laravel's Skip). cond is a bool or a function of the job's
    arguments, called at run time."""

    condition: Condition
    skip_if: bool = True

    @classmethod
    def when(cls, condition: Condition) -> Skip:
        return cls(condition, True)

    @classmethod
    def unless(cls, condition: Condition) -> Skip:
        return cls(condition, False)

    def handle(self, call: Call, proceed: Callable[[], None]) -> None:
        cond = self.condition
        value = cond(*call.args, **call.kwargs) if callable(cond) else cond
        if bool(value) == self.skip_if:
            log.info("job %s (%s) skipped by Skip.%s", loggable(call.payload.id), call.job.name,
                     "when" if self.skip_if else "unless")
            return
        proceed()


def run(call: Call, stack: Sequence[Middleware]) -> Any:
    """Run call.job through stack (first = outermost); its return value (None when a
    middleware did not let it run)."""
    returned: list[Any] = []

    def step(index: int) -> None:
        if index == len(stack):
            returned.append(call.job.fn(*call.args, **call.kwargs))
            return
        stack[index].handle(call, lambda: step(index + 1))

    step(0)
    return returned[0] if returned else None
