"""Counting in the master, in memory: job outcomes, runtimes and waits (from the children's
reports), restarts by reason, process states, time spent in BACKOFF and FATAL.

Two views of the same counts: cumulative Prometheus metrics in a registry of their own
(exporter.py serves it), and the deltas since the last flush, per queue, as the fields of
the per-minute buckets (buckets.py writes them to Redis). Pure: no I/O, no threads.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

# done, failed, released, timeout come from the child's finish report; the master adds
# timeout and memory (it killed the child mid-job), lost (the child died mid-job) and
# stopped (it was stopped mid-job, e.g. a fast shutdown).
OUTCOMES = ("done", "failed", "released", "timeout", "memory", "lost", "stopped")
RESTART_REASONS = ("crash", "max_jobs", "max_time", "memory", "deploy", "timeout")
# Seconds; Prometheus' defaults, then minutes and an hour for long jobs and long waits.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           300.0, 900.0, 3600.0)
# Label combinations (queue, job) kept apart; past this, names count as OTHER, so a
# flood of job names cannot grow the master's memory or a scrape without bound.
MAX_SERIES = 2000
OTHER = "(other)"
MAX_PENDING_FIELDS = 200_000  # bucket fields kept while Redis is away (buckets.py)
_EXIT_REASONS = {10: "max_jobs", 11: "max_time", 12: "memory", 13: "deploy", 14: "timeout"}


def restart_reason(status: int, kill_reason: str | None, stopping: bool) -> str | None:
    """Why a reaped child gets replaced, or None when it was asked to stop (stop, scale
    down, reload, shutdown) or stopped on request (exit 0). Exit codes: exitcodes.py."""
    if kill_reason in ("timeout", "memory"):
        return kill_reason
    if stopping:
        return None
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return None if code == 0 else _EXIT_REASONS.get(code, "crash")
    return "crash"


class Counters:
    """What the master counted; cumulative for Prometheus, deltas for the buckets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs = Counter("supervisorq_jobs", "Jobs finished, by outcome",
                            ["queue", "job", "outcome"], registry=r)
        self.duration = Histogram("supervisorq_job_duration_seconds", "Job runtime",
                                  ["queue", "job"], buckets=BUCKETS, registry=r)
        self.wait = Histogram("supervisorq_job_wait_seconds",
                              "From ready (dispatch, release, delay over) to reserved",
                              ["queue"], buckets=BUCKETS, registry=r)
        self.restarts = Counter("supervisorq_process_restarts",
                                "Children replaced, by reason", ["program", "reason"],
                                registry=r)
        self.state_seconds = Counter("supervisorq_process_state_seconds",
                                     "Child-seconds spent in BACKOFF or FATAL",
                                     ["program", "state"], registry=r)
        self.series: set[tuple[str, str]] = set()
        # labels() children by their labels, as labels() returns them (it takes a lock
        # and builds its key on every call: twice per job, from every child's reports)
        self.children: dict[tuple[object, ...], Any] = {}
        self.processes: dict[tuple[str, str], int] = {}  # (program, state) -> children
        self.pending: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.pending_fields = 0
        # Jobs finished since the master started, per (queue, outcome): alert rates.
        self.totals: dict[tuple[str, str], int] = defaultdict(int)

    def _job(self, queue: str, job: str) -> str:
        if (queue, job) not in self.series:
            if len(self.series) >= MAX_SERIES:
                return OTHER
            self.series.add((queue, job))
        return job

    def _add(self, queue: str, field: str, amount: int) -> None:
        fields = self.pending[queue]
        if field not in fields:
            if self.pending_fields >= MAX_PENDING_FIELDS:
                return  # Redis has been away long: older minutes are kept, newer dropped
            self.pending_fields += 1
        fields[field] += amount

    def _child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        child = self.children.get((metric, *labels))
        if child is None:
            child = self.children[(metric, *labels)] = metric.labels(*labels)
        return child

    def started(self, queue: str, job: str, wait: float, minute: int) -> None:
        """A job started after waiting `wait` seconds; minute: its epoch minute."""
        job = self._job(queue, job)
        self._child(self.wait, queue).observe(wait)
        self._add(queue, f"{minute}:{job}:started", 1)
        self._add(queue, f"{minute}:{job}:wait_ms", int(wait * 1000))

    def finished(self, queue: str, job: str, outcome: str, runtime: float,
                 minute: int) -> None:
        """A job ended with outcome after runtime seconds."""
        job = self._job(queue, job)
        self._child(self.jobs, queue, job, outcome).inc()
        self.totals[(queue, outcome)] += 1
        self._child(self.duration, queue, job).observe(runtime)
        self._add(queue, f"{minute}:{job}:{outcome}", 1)
        self._add(queue, f"{minute}:{job}:runtime_ms", int(runtime * 1000))

    def restarted(self, program: str, reason: str) -> None:
        self.restarts.labels(program, reason).inc()

    def in_state(self, program: str, state: str, seconds: float) -> None:
        self.state_seconds.labels(program, state).inc(seconds)

    def set_processes(self, counts: Mapping[tuple[str, str], int]) -> None:
        self.processes = dict(counts)

    def take_pending(self) -> dict[str, dict[str, int]]:
        """The deltas since the last take, per queue; the caller flushes or gives back."""
        pending, self.pending = self.pending, defaultdict(lambda: defaultdict(int))
        self.pending_fields = 0
        return {queue: dict(fields) for queue, fields in pending.items()}

    def give_back(self, pending: Mapping[str, Mapping[str, int]]) -> None:
        """Deltas a flush could not write: counted again with the newer ones (bounded)."""
        for queue, fields in pending.items():
            for field, amount in fields.items():
                self._add(queue, field, amount)
