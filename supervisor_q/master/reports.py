"""Reading the children's report pipes in the master and applying each report to its
pool: ready, job started, job finished, or a job slot child's summary (jobslots.py). A
busy pipe is read in batches (REPORT_BATCH) so a child running thousands of tiny jobs a
second wakes the master a few dozen times.
A child's stdout and stderr pipes (output.py) are watched and rested with its report pipe.

While a child keeps reporting, its pipes are read on the master's clock, every
REPORT_BATCH on a grid all busy children share (one wake for all of them), and not
watched in between: a write to a watched pipe wakes the master with a synchronous
wake-up, which Linux tends to serve on the writer's CPU, where the master's burst of
reading would preempt the busy child. A pipe found empty at its read is watched again:
an idle child's first report wakes the master at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable

from supervisor_q.clock import Clock
from supervisor_q.config.loading import WorkerProgram
from supervisor_q.master import deadlines, jobslots
from supervisor_q.master.output import OutputCapture
from supervisor_q.master.pool import Pool
from supervisor_q.master.process import ChildProcess
from supervisor_q.master.wakeup import Wakeup
from supervisor_q.observe.counters import Counters
from supervisor_q.worker.report import Event, parse_lines

log = logging.getLogger("supervisor_q.arbiter")

REPORT_BATCH = 0.05  # seconds a child's report pipe rests after being read
GARBLED_LOGGED = 5  # unreadable report lines logged per child


class ReportReader:
    """Watches each child's report pipe on the arbiter's selector."""

    def __init__(self, wakeup: Wakeup, clock: Clock) -> None:
        self.wakeup = wakeup
        self.clock = clock
        self.counters: Counters | None = None  # metrics on: every start and end counted
        self.output = OutputCapture(wakeup)

    def close(self, pool: Pool, child: ChildProcess) -> None:
        run = pool.run_of(child)
        if run.fd is not None:
            try:
                self.wakeup.unregister(run.fd)
            except (KeyError, ValueError):
                pass
            os.close(run.fd)
            run.fd = None

    def register(self, pool: Pool, child: ChildProcess, now: float) -> None:
        """Watch a child's report pipe: a new child's at once, a busy one's again after
        its batching pause (reading first what arrived in the meantime)."""
        run = pool.run_of(child)
        if (run.fd is None and not run.outputs) or run.registered or now < run.rearm_at:
            return
        if run.rearm_at:
            reported = self.read(pool, child)
            self.output.read(pool, child)
            if reported and run.fd is not None:  # still busy: read it again on the clock
                run.rearm_at = (now // REPORT_BATCH + 1) * REPORT_BATCH
                return
        fds = ([] if run.fd is None else [run.fd]) + self.output.fds(pool, child)
        for fd in fds:
            self.wakeup.register(fd, ("child", (pool, child)))
        run.registered = bool(fds)

    def finish(self, pool: Pool, child: ChildProcess) -> None:
        """The child was reaped: its last reports and output, the pipes closed."""
        run = pool.run_of(child)
        if run.fd is not None:
            self.read(pool, child)  # the last words before the exit
            self.close(pool, child)
        jobslots.sync(pool, child)  # its last state: a job it finished is not handed back
        jobslots.close(pool, child)
        self.output.read(pool, child, drain=True)
        run.registered = False

    def ready(self, pool: Pool, child: ChildProcess) -> None:
        """Read a child's reports, then stop watching its pipe for REPORT_BATCH seconds.
        Deadlines stay exact: reports carry their own times."""
        self.read(pool, child)
        self.output.read(pool, child)
        run = pool.run_of(child)
        if run.registered:
            for fd in ([] if run.fd is None else [run.fd]) + list(run.outputs.values()):
                self.wakeup.unregister(fd)
            run.registered = False
            run.rearm_at = self.clock.monotonic() + REPORT_BATCH

    def catch_up(self, pool: Pool, now: float) -> None:
        """Take in the job slots, then read the reports of the children whose job looks
        past its deadline."""
        jobslots.sync_all((pool,))
        for child in deadlines.overdue(pool, now):
            self.read(pool, child)

    def sync_all(self, pools: Iterable[Pool]) -> None:
        """Every child's job as its slot says now (before running jobs are listed)."""
        jobslots.sync_all(pools)

    def drop_job(self, pool: Pool, child: ChildProcess) -> None:
        """Forget child's current job (another master settled it): never handed back."""
        jobslots.drop(pool, child)

    def rearm_moments(self, pools: Iterable[Pool]) -> list[float]:
        """When rested pipes are watched again, and the next look at the job slots while
        a child has one (the arbiter wakes then)."""
        pools = list(pools)
        moments = [run.rearm_at for p in pools for run in p.runs.values()
                   if (run.fd is not None or run.outputs) and not run.registered
                   and run.rearm_at]
        if any(run.slot is not None for p in pools for run in p.runs.values()):
            moments.append(self.clock.monotonic() + jobslots.SLOT_POLL)
        return moments

    def read(self, pool: Pool, child: ChildProcess) -> int:
        """Everything the pipe holds now (its size is returned); closes it when the
        child closed its end."""
        run = pool.run_of(child)
        size = 0
        while run.fd is not None:
            try:
                chunk = os.read(run.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:  # the child closed its end (it exited): stop watching
                self.close(pool, child)
                break
            size += len(chunk)
            events, run.buffer = parse_lines(run.buffer + chunk)
            self.apply(pool, child, events)
        return size

    def apply(self, pool: Pool, child: ChildProcess, events: list[Event]) -> None:
        now = self.clock.monotonic()
        counters, minute = self.counters, int(time.time()) // 60
        for ev in events:
            if ev.kind == "ready":
                pool.child_ready(child, ev.generation)
            elif ev.kind == "started":
                pool.job_started(child, ev.job_id, ev.name, ev.queue, ev.timeout,
                                 ev.attempts, min(ev.at, now))
                if counters is not None:
                    counters.started(ev.queue, ev.name, ev.wait, minute)
            elif ev.kind == "finished":
                job = child.job
                if job is not None and job.id == ev.job_id:
                    runtime = max(0.0, ev.at - job.started_at)
                    pool.scaling.record_runtime(runtime)
                    if counters is not None:
                        counters.finished(job.queue, job.name, ev.outcome, runtime, minute)
                pool.job_finished(child, ev.job_id)
            elif ev.kind == "summary" and ev.summary is not None:
                jobslots.apply_summary(pool, child, ev.summary, counters, minute)
            else:
                self.garbled(pool, child, ev.line, now)

    def garbled(self, pool: Pool, child: ChildProcess, line: bytes, now: float) -> None:
        """A report line that cannot be read (a bug, or a job writing to its process's
        report fd: the framing carries any id). Say so loudly, a few times per child, and
        keep every deadline: an unreadable start makes an idle child busy under the
        program's timeout, and never replaces (nor an unreadable finish ends) the job the
        master knows, whose own deadline and id are what kill and settle it."""
        run = pool.run_of(child)
        run.garbled += 1
        if run.garbled <= GARBLED_LOGGED:
            log.error("%s pid=%s: unreadable report %r%s", child.name, child.pid, line[:200],
                      " (further ones not logged)" if run.garbled == GARBLED_LOGGED else "")
        kind = line[:1]
        jobslots.sync(pool, child)  # a job slot's state written before this line counts
        if kind == b"S" and child.job is None and isinstance(pool.program, WorkerProgram):
            pool.job_started(child, "", "(unreadable report)", "", pool.program.timeout,
                             0, now)
        elif kind == b"R":
            pool.child_ready(child, None)
