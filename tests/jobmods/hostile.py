"""Jobs for the hostile-input tests (tests/worker/test_hostile_input.py)."""

from __future__ import annotations

import gc
import itertools
import os
import signal

from supervisor_q import current_job, job
from supervisor_q.worker.report import PipeReporter
from supervisor_q.worker.slotreport import SummaryReporter
from tests.jobmods.basic import record

REPORTERS = (PipeReporter, SummaryReporter)  # a child's, with or without a job slot


@job(name="tests.garbled_start_then_stuck")
def garbled_start_then_stuck() -> None:
    """Tells the master (through the child's real report pipe) that this job ended, then
    sends a start report it cannot read, then spins in C with SIGALRM and SIGTERM
    blocked: only a master that keeps a deadline for the unreadable start stops it."""
    record(phase="start")
    ctx = current_job()
    assert ctx is not None
    [reporter] = [o for o in gc.get_objects() if isinstance(o, REPORTERS)]
    reporter.job_finished(ctx.id)
    os.write(reporter.fd, b'S ["cut off here\n')
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
    sum(itertools.repeat(1, 10**11))


@job(name="tests.garbage_on_report_pipe_then_stuck")
def garbage_on_report_pipe_then_stuck() -> None:
    """Writes garbage to its process's report pipe while the master knows this job (lines
    that start like a start and a finish report), then spins in C with SIGALRM and
    SIGTERM blocked: only the job's own deadline, kept by the master, stops it."""
    record(phase="start")
    [reporter] = [o for o in gc.get_objects() if isinstance(o, REPORTERS)]
    os.write(reporter.fd, b"S garbage from the job\nE garbage too\nS 30.0 x\n")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
    sum(itertools.repeat(1, 10**11))


@job(name="tests.report_pipe_in_subprocess")
def report_pipe_in_subprocess() -> None:
    """Records whether a subprocess of the job (even with close_fds=False) holds the
    child's report pipe: it must not (the fd is close-on-exec)."""
    import subprocess

    [reporter] = [o for o in gc.get_objects() if isinstance(o, REPORTERS)]
    pipe = os.readlink(f"/proc/self/fd/{reporter.fd}")
    out = subprocess.run(["sh", "-c", 'for f in /proc/$$/fd/*; do readlink "$f"; done'],
                         close_fds=False, capture_output=True, text=True).stdout
    record(pipe=pipe, inherited=pipe in out.split())


@job(name="tests.hostile_summaries")
def hostile_summaries() -> None:
    """Writes summary lines the master must not trust to its process's report pipe:
    broken JSON, wrong shapes, an unknown outcome, infinite and huge numbers, deep
    nesting, bytes that are not UTF-8; then returns normally."""
    [reporter] = [o for o in gc.get_objects() if isinstance(o, REPORTERS)]
    lines = [b"M {", b"M []", b'M {"w":[["q","n",[Infinity]]],"r":[]}',
             b'M {"w":[],"r":[["q","n","exploded",[1]]]}', b'M {"w":[["q","n",[1e400]]],"r":[]}',
             b'M {"w":[],"r":[["q","n",[],[1]]]}', b"M " + b"[" * 200_000, b"M \xff\xfe"]
    os.write(reporter.fd, b"\n".join(lines) + b"\n")
    record(phase="done")
