"""The in-child hard timeout: SIGALRM raises JobTimeout inside the job.

This is the first, polite layer only. It cannot interrupt C code that never returns
to the interpreter or a job that blocks SIGALRM; the master owns the real deadline
and escalates SIGTERM, then SIGKILL (master/pool.py: Pool.enforce_deadlines, called
from the arbiter's loop), and so does the guard process of `supervisor-q work`
(guard.py).
"""

from __future__ import annotations

import signal
from types import FrameType

from supervisor_q import procid


class JobTimeout(BaseException):
    """Raised in a job that ran past its timeout.

    A BaseException, like KeyboardInterrupt, so a job's broad `except Exception`
    cannot swallow it and keep running past its limit.
    """


_installed_in = [0]  # pid of the process whose SIGALRM handler is _raise_timeout
_running: list[alarm | None] = [None]  # the alarm of the job running now, if any
_armed_in = [0]  # pid of the process whose interval timer may still be armed


def _raise_timeout(signum: int, frame: FrameType | None) -> None:
    timer = _running[0]
    if timer is None or timer.returned:
        return  # late: the job already returned (or no job runs at all)
    raise JobTimeout()


class alarm:  # noqa: N801  (used as a function: `with alarm(seconds) as timer`)
    """Raise JobTimeout in this thread once seconds have passed; 0 disables.

    The handler is installed once per process and stays between jobs, and the timer is
    not cleared when the job ends: the next job's alarm replaces it (one system call
    per job, not three). Fired between jobs, it finds no job running and does nothing.
    A job that replaces the handler only loses this first layer: the master (or the
    guard) still enforces the deadline.

    The caller sets `returned` (on what `with` gives) in the statement right after the
    job body returns: an alarm whose handler runs after that (the timer expired during
    the body's last C call, or between the return and the clearing of the timer) is
    late, and the job is finished, not timed out. One object per job: it is its own
    timer."""

    __slots__ = ("returned", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.returned = False

    def __enter__(self) -> alarm:
        pid = procid.pid()
        if self.seconds <= 0:
            if _armed_in[0] == pid:  # a job before left its timer: off, not to fire late
                signal.setitimer(signal.ITIMER_REAL, 0)
                _armed_in[0] = 0
            return self
        if _installed_in[0] != pid:
            signal.signal(signal.SIGALRM, _raise_timeout)
            _installed_in[0] = pid
        _running[0] = self
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        _armed_in[0] = pid
        return self

    def __exit__(self, *exc: object) -> None:
        _running[0] = None


