"""One INFO line when a job starts and one when it ends (id, name, queue, attempt,
outcome, runtime), as Laravel's worker prints: a reporter that logs, then passes each
report on. A program's `log_jobs: false` or `work --quiet` leaves it out.

The lines go through logs.info_line (no LogRecord, unless the application's logging
would see them); an end line is held back and written with the next start line, or
when the worker flushes its reports before anything that may take long (a blocking
wait, its exit): one write per job."""

from __future__ import annotations

import logging
import time

from supervisor_q.logs import JOB_FIELDS, info_line, release_lines
from supervisor_q.queue.payload import loggable
from supervisor_q.worker.report import Reporter

log = logging.getLogger("supervisor_q.jobs")


class JobLog:
    """Wraps a reporter; logs each job's start and end on the way."""

    def __init__(self, inner: Reporter, label: str) -> None:
        self.inner = inner
        self.label = label
        # the running job: its id, (id, name, queue) as its lines show them, their head
        # ("job <id> <name> on <queue>: "), attempt, start
        self.job: tuple[str, tuple[str, str, str], str, int, float] | None = None
        self.names: dict[str, str] = {}  # job name -> as shown (made once per name)

    def ready(self, generation: float | None) -> None:
        self.inner.ready(generation)

    def job_started(self, job_id: str, name: str, queue: str, timeout: float,
                    attempts: int, wait: float = 0.0) -> None:
        shown_name = self.names.get(name)
        if shown_name is None:
            shown_name = self.names[name] = loggable(name, 200)
            if len(self.names) > 1000:  # names come from payloads: keep it bounded
                self.names.clear()
        shown_id = loggable(job_id, 100)
        head = f"job {shown_id} {shown_name} on {queue}: "
        ident = (shown_id, shown_name, queue)  # a JSON line's fields, shown as in the text
        self.job = (job_id, ident, head, attempts, time.monotonic())
        message = f"{head}started (attempt {attempts})"
        if not info_line(log, message, ident):
            log.info("%s", message, extra=dict(zip(JOB_FIELDS, ident, strict=True)))
        self.inner.job_started(job_id, name, queue, timeout, attempts, wait)

    def job_refused(self, job_id: str, name: str, queue: str, attempts: int,
                    wait: float = 0.0) -> None:
        # no job lines: it never started, and the worker logged why it was failed
        self.inner.job_refused(job_id, name, queue, attempts, wait)

    def hold_finishes(self, margin: float | None) -> None:
        self.inner.hold_finishes(margin)

    def flush(self) -> None:
        self.inner.flush()
        release_lines()

    def job_finished(self, job_id: str, outcome: str = "done") -> None:
        self.inner.job_finished(job_id, outcome)
        if self.job is None or self.job[0] != job_id:
            return
        _, ident, head, attempts, started = self.job
        self.job = None
        message = (f"{head}{outcome} in {time.monotonic() - started:.3f}s "
                   f"(attempt {attempts})")
        if not info_line(log, message, ident, hold=True):
            log.info("%s", message, extra={**dict(zip(JOB_FIELDS, ident, strict=True)),
                                           "outcome": outcome})
