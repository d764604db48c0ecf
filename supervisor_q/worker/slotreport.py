"""A master's worker child's reports when it has a job slot (master/jobslots.py).

The current job goes into the slot (jobslot.py: a few memory writes, no syscall, no
wake-up of the master), which the master reads on each turn of its loop. Finished jobs
are tallied here and sent as one summary line ("M", report.py) at a finish once
REPORT_BATCH seconds passed since the last one or MAX_TALLIED jobs wait, and at
flush(), which the worker calls before anything that may take long (a blocking wait, a
sleep, a backoff, an outage retry, its exit). "ready" is a line as with PipeReporter.
A start is sent at once unless a summary went within REPORT_BATCH; a finish (or start)
tallied within REPORT_BATCH of a summary and followed by a long job is counted when that
job ends or at the next flush (a child killed meanwhile takes those counts with it).

With hold_finishes(margin), a finished job far enough from its deadline stays in the
slot (and out of the tally) until the next start or flush, as PipeReporter holds its E
line: its ack waits for the next reserve, and a child that dies before it lands has the
job handed back by the master.

Runtimes are measured here, finish - start on CLOCK_MONOTONIC, as the master measured
them from the S and E lines' times.
"""

from __future__ import annotations

import mmap
import time

from supervisor_q.worker.jobslot import SlotWriter
from supervisor_q.worker.report import summary_line, write_lines

REPORT_BATCH = 0.05  # seconds between two summaries (master/reports.py rests pipes as long)
MAX_TALLIED = 500  # finished jobs that make a summary go at once (a bounded line)


class SummaryReporter:
    """The slot for the running job, summaries for the finished ones (a report.Reporter)."""

    def __init__(self, fd: int, slot: mmap.mmap) -> None:
        self.fd = fd
        self.writer = SlotWriter(slot)
        self.waits: dict[tuple[str, str], list[float]] = {}
        self.runtimes: dict[tuple[str, str, str], list[float]] = {}
        self.tallied = 0
        self.sent_at = 0.0  # monotonic, the last summary
        self.job: tuple[str, str, str, float] | None = None  # id, queue, name, start
        self.deadline = 0.0  # the running job's, monotonic; inf: none
        self.margin: float | None = None  # hold a finish this far from its deadline
        self.held: tuple[str, str, str, float] | None = None  # a finish not published yet

    def ready(self, generation: float | None) -> None:
        self.flush()
        write_lines(self.fd, "R -\n" if generation is None else f"R {generation!r}\n")

    def job_started(self, job_id: str, name: str, queue: str, timeout: float,
                    attempts: int, wait: float = 0.0) -> None:
        self._release()
        started = self.writer.start(job_id, name, queue, timeout, attempts)
        self.deadline = started + timeout if timeout > 0 else float("inf")
        self.job = (job_id, queue, name, started)
        self._wait(queue, name, wait)
        if started - self.sent_at >= REPORT_BATCH:  # a long job's start is counted now
            self.flush()

    def job_finished(self, job_id: str, outcome: str = "done") -> None:
        job = self.job
        if job is None or job[0] != job_id:
            return
        self.job = None
        now = time.monotonic()
        finish = (job[1], job[2], outcome, now - job[3])
        if self.margin is not None and self.deadline - now > self.margin:
            self.held = finish  # as PipeReporter's: still named until the next start
            return
        self.writer.idle()
        self._runtime(*finish)
        if now - self.sent_at >= REPORT_BATCH or self.tallied >= MAX_TALLIED:
            self.flush()

    def job_refused(self, job_id: str, name: str, queue: str, attempts: int,
                    wait: float = 0.0) -> None:
        """A job failed before it started: counted as started and failed, no slot write."""
        self._wait(queue, name, wait)
        self._runtime(queue, name, "failed", 0.0)

    def hold_finishes(self, margin: float | None) -> None:
        self.margin = margin

    def _release(self) -> None:
        """A held finish is published: counted (the slot is idle, or the next job's)."""
        if self.held is not None:
            self._runtime(*self.held)
            self.held = None

    def flush(self) -> None:
        if self.held is not None:
            self.writer.idle()
            self._release()
        if not (self.waits or self.runtimes):
            return
        line = summary_line(self.waits, self.runtimes)
        self.waits, self.runtimes, self.tallied = {}, {}, 0
        self.sent_at = time.monotonic()
        write_lines(self.fd, line)

    def _wait(self, queue: str, name: str, wait: float) -> None:
        waits = self.waits.get((queue, name))
        if waits is None:
            waits = self.waits[(queue, name)] = []
        waits.append(round(max(0.0, wait), 6))

    def _runtime(self, queue: str, name: str, outcome: str, runtime: float) -> None:
        runtimes = self.runtimes.get((queue, name, outcome))
        if runtimes is None:
            runtimes = self.runtimes[(queue, name, outcome)] = []
        runtimes.append(round(max(0.0, runtime), 6))
        self.tallied += 1

