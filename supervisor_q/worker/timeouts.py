"""The in-child hard timeout: SIGALRM raises JobTimeout inside the job.

This is the first, polite layer only. It cannot interrupt C code that never returns
to the interpreter or a job that blocks SIGALRM; the master owns the real deadline
and escalates SIGTERM, then SIGKILL (master/pool.py: Pool.enforce_deadlines, called
from the arbiter's loop), and so does the guard process of `supervisor-q work`
(guard.py).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from supervisor_q import procid


class JobTimeout(BaseException):
    """Raised in a job that ran past its timeout.

    A BaseException, like KeyboardInterrupt, so a job's broad `except Exception`
    cannot swallow it and keep running past its limit.
    """


class Timer:
    """One job's alarm. The caller sets `returned` in the statement right after the job
    body returns: an alarm whose handler runs after that (the timer expired during the
    body's last C call, or between the return and the clearing of the timer) is late,
    and the job is finished, not timed out."""

    __slots__ = ("returned",)

    def __init__(self) -> None:
        self.returned = False


_installed_in = [0]  # pid of the process whose SIGALRM handler is _raise_timeout
_running: list[Timer | None] = [None]  # the alarm of the job running now, if any


def _raise_timeout(signum: int, frame: FrameType | None) -> None:
    timer = _running[0]
    if timer is None or timer.returned:
        return  # late: the job already returned (or no job runs at all)
    raise JobTimeout()


@contextmanager
def alarm(seconds: float) -> Iterator[Timer]:
    """Raise JobTimeout in this thread once seconds have passed; 0 disables."""
    timer = Timer()
    if seconds <= 0:
        yield timer
        return
    # The handler is installed once per process and stays between jobs (two fewer
    # syscalls per job). A job that replaces it only loses this first layer: the
    # master (or the guard) still enforces the deadline.
    if _installed_in[0] != procid.pid():
        signal.signal(signal.SIGALRM, _raise_timeout)
        _installed_in[0] = procid.pid()
    _running[0] = timer
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield timer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _running[0] = None
