"""The in-child hard timeout: SIGALRM raises JobTimeout inside the job.

This is the first, polite layer only. It cannot interrupt C code that never returns
to the interpreter or a job that blocks SIGALRM; the master owns the real deadline
and escalates SIGTERM, then SIGKILL (arbiter.enforce_deadlines).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class JobTimeout(BaseException):
    """Raised in a job that ran past its timeout.

    A BaseException, like KeyboardInterrupt, so a job's broad `except Exception`
    cannot swallow it and keep running past its limit.
    """


_installed_in = [0]  # pid of the process whose SIGALRM handler is _raise_timeout


def _raise_timeout(signum: int, frame: FrameType | None) -> None:
    raise JobTimeout()


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise JobTimeout in this thread once seconds have passed; 0 disables."""
    if seconds <= 0:
        yield
        return
    # The handler is installed once per process and stays between jobs (two fewer
    # syscalls per job). A job that replaces it only loses this first layer: the
    # master still enforces the deadline.
    if _installed_in[0] != os.getpid():
        signal.signal(signal.SIGALRM, _raise_timeout)
        _installed_in[0] = os.getpid()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
