"""What a running job may ask for: its context (current_job), release() and fail().

The worker sets the context around each run; release() and fail() raise the
exceptions the worker turns into a release or a failure. Imports payload only.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from supervisor_q.logs import bind_job
from supervisor_q.queue import payload as payloads


class ReleaseJob(BaseException):
    """Raised by release(): put the job back, to run again after delay seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.delay = delay


class FailJob(BaseException):
    """Raised by fail(): move the job to the failed store now, no more attempts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def release(delay: float = 0.0) -> None:
    """From inside a job: stop here and run this job again after delay seconds."""
    raise ReleaseJob(delay)


def fail(reason: str = "failed by the job") -> None:
    """From inside a job: stop here and fail this job without further attempts."""
    raise FailJob(reason)


@dataclass(frozen=True)
class JobContext:
    """What a running job can learn about itself through current_job()."""

    id: str
    name: str
    queue: str
    attempts: int
    payload: payloads.Payload


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "supervisor_q_current_job", default=None)


def current_job() -> JobContext | None:
    """The job running in this worker, or None outside a job."""
    return _current.get()


def set_current_job(context: JobContext | None) -> contextvars.Token:
    """Make context the current job (the worker, around one run); returns the reset token."""
    token = _current.set(context)
    _bind_log(context)
    return token


def reset_current_job(token: contextvars.Token) -> None:
    """Undo the set_current_job that returned token."""
    _current.reset(token)
    before = token.old_value  # what reset() restored (MISSING: the default, None)
    _bind_log(None if before is contextvars.Token.MISSING else before)


def _bind_log(context: JobContext | None) -> None:
    """Log records written in a job carry its id, name and queue (logs.JobFilter), shown
    as every log line shows them (loggable: a newline in an id cannot forge a line)."""
    if context is None:
        bind_job(None)
    else:
        bind_job(payloads.loggable(context.id, 100), payloads.loggable(context.name),
                 context.queue)
