"""The in-child hard timeout: SIGALRM raises JobTimeout inside the job.

This is the first, polite layer only. It cannot interrupt C code that never returns
to the interpreter or a job that blocks SIGALRM; the master owns the real deadline
and escalates SIGTERM, then SIGKILL (arbiter.enforce_deadlines).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class JobTimeout(BaseException):
    """Raised in a job that ran past its timeout.

    A BaseException, like KeyboardInterrupt, so a job's broad `except Exception`
    cannot swallow it and keep running past its limit.
    """


def _raise_timeout(signum: int, frame: FrameType | None) -> None:
    raise JobTimeout()


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise JobTimeout in this thread once seconds have passed; 0 disables."""
    if seconds <= 0:
        yield
        return
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
