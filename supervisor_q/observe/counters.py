"""Counting in the master, in memory: job outcomes, runtimes and waits (from the children's
reports), restarts by reason, process states, time spent in BACKOFF and FATAL.

Two views of the same counts: cumulative Prometheus metrics in a registry of their own
(exporter.py serves it; the per-job ones are plain numbers until a scrape,
jobmetrics.py), and the deltas since the last flush, per queue, as the fields of the
per-minute buckets (buckets.py writes them to Redis). A job's start and finish are
counted twice per job of every child, so they are a few dict and list increments; the
bucket fields' names are made at the flush. Pure: no I/O, no threads.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter

from supervisor_q.observe.jobmetrics import JobMetrics

# done, failed, released, timeout come from the child's finish report; the master adds
# timeout and memory (it killed the child mid-job), lost (the child died mid-job) and
# stopped (it was stopped mid-job, e.g. a fast shutdown).
OUTCOMES = ("done", "failed", "released", "timeout", "memory", "lost", "stopped")
RESTART_REASONS = ("crash", "max_jobs", "max_time", "memory", "deploy", "timeout")
# Label combinations (queue, job) kept apart; past this, names count as OTHER, so a
# flood of job names cannot grow the master's memory or a scrape without bound.
MAX_SERIES = 2000
OTHER = "(other)"
MAX_PENDING_FIELDS = 200_000  # bucket fields kept while Redis is away (buckets.py)
# A (queue, minute, job)'s pending counts, by index: the bucket fields of buckets.py.
_STARTED, _WAIT_MS, _FINISHED, _RUNTIME_MS = range(4)  # _FINISHED: no field of its own
_OUTCOME_SLOT = {outcome: 4 + n for n, outcome in enumerate(OUTCOMES)}
_FIELDS = {"started": _STARTED, "wait_ms": _WAIT_MS, "runtime_ms": _RUNTIME_MS,
           **_OUTCOME_SLOT}
# a field is written when this slot counted a job: wait_ms and runtime_ms may sum to 0
_PRESENT_WITH = {_WAIT_MS: _STARTED, _RUNTIME_MS: _FINISHED}
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
        self.job_metrics = JobMetrics()
        r.register(self.job_metrics)
        self.restarts = Counter("supervisorq_process_restarts",
                                "Children replaced, by reason", ["program", "reason"],
                                registry=r)
        self.state_seconds = Counter("supervisorq_process_state_seconds",
                                     "Child-seconds spent in BACKOFF or FATAL",
                                     ["program", "state"], registry=r)
        self.series: set[tuple[str, str]] = set()
        self.processes: dict[tuple[str, str], int] = {}  # (program, state) -> children
        # (queue, epoch minute, job) -> counts by slot (_FIELDS), since the last take
        self.pending: dict[tuple[str, int, str], list[int]] = {}
        self.pending_fields = 0  # bucket fields those counts make
        # Jobs finished since the master started, per (queue, outcome): alert rates.
        self.totals: dict[tuple[str, str], int] = defaultdict(int)

    def _job(self, queue: str, job: str) -> str:
        if (queue, job) not in self.series:
            if len(self.series) >= MAX_SERIES:
                return OTHER
            self.series.add((queue, job))
        return job

    def _tally(self, queue: str, minute: int, job: str) -> list[int]:
        tally = self.pending.get((queue, minute, job))
        if tally is None:
            tally = self.pending[(queue, minute, job)] = [0] * (4 + len(OUTCOMES))
        return tally

    def _new_fields(self, count: int) -> bool:
        """Whether count fields not pending yet may be added (Redis has been away long:
        older minutes are kept, newer dropped)."""
        if self.pending_fields >= MAX_PENDING_FIELDS:
            return False
        self.pending_fields += count
        return True

    def started(self, queue: str, job: str, wait: float, minute: int) -> None:
        """A job started after waiting `wait` seconds; minute: its epoch minute."""
        self.started_many(queue, job, [wait], minute)

    def finished(self, queue: str, job: str, outcome: str, runtime: float,
                 minute: int) -> None:
        """A job ended with outcome after runtime seconds."""
        self.finished_many(queue, job, outcome, [runtime], minute)

    def started_many(self, queue: str, job: str, waits: list[float], minute: int) -> None:
        """len(waits) jobs started (a job slot child's summary): one tally, every wait
        in the histogram."""
        job = self._job(queue, job)
        for wait in waits:
            self.job_metrics.started(queue, wait)
        tally = self._tally(queue, minute, job)
        if tally[_STARTED] or self._new_fields(2):
            tally[_STARTED] += len(waits)
            tally[_WAIT_MS] += sum(int(wait * 1000) for wait in waits)

    def finished_many(self, queue: str, job: str, outcome: str, runtimes: list[float],
                      minute: int) -> None:
        """len(runtimes) jobs ended with outcome (a summary), as many finished() calls."""
        job = self._job(queue, job)
        for runtime in runtimes:
            self.job_metrics.finished(queue, job, outcome, runtime)
        self.totals[(queue, outcome)] += len(runtimes)
        tally = self._tally(queue, minute, job)
        slot = _OUTCOME_SLOT[outcome]
        if tally[_FINISHED] or self._new_fields(1):
            tally[_FINISHED] += len(runtimes)
            tally[_RUNTIME_MS] += sum(int(runtime * 1000) for runtime in runtimes)
        if tally[slot] or self._new_fields(1):
            tally[slot] += len(runtimes)

    def restarted(self, program: str, reason: str) -> None:
        self.restarts.labels(program, reason).inc()

    def in_state(self, program: str, state: str, seconds: float) -> None:
        self.state_seconds.labels(program, state).inc(seconds)

    def set_processes(self, counts: Mapping[tuple[str, str], int]) -> None:
        self.processes = dict(counts)

    def take_pending(self) -> dict[str, dict[str, int]]:
        """The deltas since the last take, per queue, as bucket fields (`<minute>:<job>:
        <field>` -> amount); the caller flushes or gives back."""
        pending, self.pending = self.pending, {}
        self.pending_fields = 0
        out: dict[str, dict[str, int]] = {}
        for (queue, minute, job), tally in pending.items():
            fields = out.setdefault(queue, {})
            for field, slot in _FIELDS.items():
                if tally[_PRESENT_WITH.get(slot, slot)]:  # wait_ms 0 is still a field
                    fields[f"{minute}:{job}:{field}"] = tally[slot]
        return out

    def give_back(self, pending: Mapping[str, Mapping[str, int]]) -> None:
        """Deltas a flush could not write: counted again with the newer ones (bounded)."""
        for queue, fields in pending.items():
            for name, amount in fields.items():
                minute, _, rest = name.partition(":")
                job, _, field = rest.rpartition(":")  # a job's name may hold colons
                slot = _FIELDS[field]
                tally = self._tally(queue, int(minute), job)
                if tally[slot] or self._new_fields(1):
                    tally[slot] += amount
                    if field in _OUTCOME_SLOT:
                        tally[_FINISHED] += amount
