"""The worker's checks between jobs: recycle reasons (max_jobs, max_time, memory, the
restart signal), the queues paused fleet-wide, the parent's death, the sweep for batch
callbacks whose winner was lost, and how long a finished job's report may be held back
(report.PipeReporter.hold_finishes).

A mixin of the Worker (loop.py), like SignalFlags and RedisRetry, split out for size.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import redis

from supervisor_q import exitcodes
from supervisor_q.queue.faults import is_topology_fault
from supervisor_q.queue.pauses import paused_queues
from supervisor_q.queue.restart import read_generation, should_restart
from supervisor_q.worker import lifecycle
from supervisor_q.worker.memory import current_rss
from supervisor_q.workflows.callbacks import SWEEP_EVERY

if TYPE_CHECKING:
    from supervisor_q.queue.backend import RedisQueue
    from supervisor_q.worker.report import Reporter
    from supervisor_q.worker.settings import WorkerSettings

RESTART_CHECK_INTERVAL = 1.0


class Checks:
    """recycle_reason(), idle_checks(), parent_alive(); the Worker provides the
    attributes below."""

    settings: WorkerSettings
    queue: RedisQueue
    reporter: Reporter
    queues: list[str]
    started: float
    started_with: float | None
    parent_pid: int | None
    follows_restart: bool  # False: a zygote's child, replaced by the master on deploy
    max_jobs: int
    max_time: float
    jobs_done: int

    def _init_checks(self) -> None:
        self.next_restart_check = 0.0
        self.next_sweep = time.monotonic() + SWEEP_EVERY
        self.next_parent_check = 0.0
        self.parent_gone = False

    def recycle_reason(self) -> int | None:
        """Checked after every job: max_jobs, max_time, memory, restart signal."""
        if self.max_jobs and self.jobs_done >= self.max_jobs:
            return exitcodes.MAX_JOBS
        return self.idle_checks(after_job=True)

    def idle_checks(self, after_job: bool = False) -> int | None:
        if self.max_time and time.monotonic() - self.started >= self.max_time:
            return exitcodes.MAX_TIME
        if after_job and self.settings.memory:
            if current_rss() > self.settings.memory * 1024 * 1024:
                return exitcodes.MEMORY
        now = time.monotonic()
        if now >= self.next_restart_check:
            self.next_restart_check = now + RESTART_CHECK_INTERVAL
            self.reporter.flush()  # Redis calls besides the reserve: the finish goes now
            try:
                current = read_generation(self.queue.client)
                paused = paused_queues(self.queue.client)
            except redis.RedisError as exc:
                if not is_topology_fault(exc):
                    raise
                return None  # unknown is not "restart": read again in a second
            self.queues = [q for q in self.settings.queues if q not in paused]
            if self.follows_restart and should_restart(self.started_with, current):
                return exitcodes.RESTART
        if now >= self.next_sweep:
            self.next_sweep = now + SWEEP_EVERY
            self.reporter.flush()  # (as above)
            lifecycle.sweep_batches(self.queue)
        return None

    def parent_alive(self) -> bool:
        # Belt and braces beside PR_SET_PDEATHSIG (which ends the child the moment its
        # parent dies): if the master is gone we were reparented. Asked once a second,
        # not once a job (a system call).
        if self.parent_pid is None:
            return True
        now = time.monotonic()
        if now >= self.next_parent_check:
            self.next_parent_check = now + RESTART_CHECK_INTERVAL
            self.parent_gone = os.getppid() != self.parent_pid
        return not self.parent_gone

    def hold_margin(self) -> float | None:
        """Seconds before its deadline past which a finished job's report may wait for the
        next start: longer than the Redis calls between them can take (the reserve over
        each queue in turn and an ack per queue, each bounded by the socket timeout).
        None (never held) when the client has no socket timeout or it cannot be told."""
        pool = getattr(self.queue.client, "connection_pool", None)
        timeout = getattr(pool, "connection_kwargs", {}).get("socket_timeout")
        if not isinstance(timeout, int | float) or timeout <= 0:
            return None
        return timeout * (2 * len(self.settings.queues) + 2) + 1.0
