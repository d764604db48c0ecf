"""Jobs for the hostile-input tests (tests/worker/test_hostile_input.py)."""

from __future__ import annotations

import gc
import itertools
import os
import signal

from supervisor_q import current_job, job
from supervisor_q.worker.report import PipeReporter
from tests.jobmods.basic import record


@job(name="tests.garbled_start_then_stuck")
def garbled_start_then_stuck() -> None:
    """Tells the master (through the child's real report pipe) that this job ended, then
    sends a start report it cannot read, then spins in C with SIGALRM and SIGTERM
    blocked: only a master that keeps a deadline for the unreadable start stops it."""
    record(phase="start")
    ctx = current_job()
    assert ctx is not None
    [reporter] = [o for o in gc.get_objects() if isinstance(o, PipeReporter)]
    reporter.job_finished(ctx.id)
    os.write(reporter.fd, b'S ["cut off here\n')
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
    sum(itertools.repeat(1, 10**11))
