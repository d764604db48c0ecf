"""Fetch-ahead: the next job's reserve is sent before a short job runs, so the next job
is there when it ends, without a round trip in between.

A mixin of the Worker (loop.py), split out for size. Before running a job, with no other
job in hand (with prefetch N: at most N // 2), the worker sends the ack of the jobs it
finished and the reserve of the next ones without waiting for the reply
(RedisQueue.reserve_ahead) when:
- the job's name ran shorter than AHEAD_BELOW on average (a moving average of its
  runtimes in this process; a name never run here is not short yet);
- the job came from the first of the worker's queues (a reserve from that queue is what
  the next round would send first: priorities hold);
- nothing says the worker stops after this job (--once, max_jobs, a stop, a pause);
- no finished job waits with a batch count, or counts can ride (not on Redis Cluster).

Batch counts ride too (queue/batchack.py): each finished batch job's BATCH_SUCCEEDED is
sent just before its ack, without waiting, with the reserve sent ahead or (held acks,
the next job already here and short) with the ack alone. Their answers are read when
the next job is wanted, before the counts of the job that ran meanwhile are sent
(collect_counts), and the callbacks they won (progress, then, finally, a chain's next
step) are dispatched then: each sees the batch as its count left it, one short job
later. A SIGKILL in that short job leaves the count and the ack done but the callbacks
it won undispatched, as a SIGKILL between a reply and its dispatch always did.

The reply is read when the next job is wanted and none is left in hand (collect_ahead);
another call on the hot connection may read it first and keep it. The jobs it reserved count
as prefetched from the moment the reserve was *sent*: the PREFETCH_HOLD rule applies to
them (started within a second, or handed back untouched, their attempt given back), so
a job reserved ahead loses at most that second of its reservation, which
RESERVATION_MARGIN (5 s) covers, and its own timeout starts with it. A SIGTERM hands
them back with the prefetched ones; after a SIGKILL they are reserved under the dead
worker's name like prefetched jobs: they come back when their reservation expires (a
fenced child's at once, handed back by its master by holder name) and run again, once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import redis

from supervisor_q.queue.cluster import TOPOLOGY_ERRORS
from supervisor_q.queue.faults import is_topology_fault
from supervisor_q.worker import lifecycle
from supervisor_q.worker.pending import Pending, waiting

if TYPE_CHECKING:
    from supervisor_q.queue.backend import RedisQueue, Reserved
    from supervisor_q.worker.report import Reporter
    from supervisor_q.worker.settings import WorkerSettings

# Finished jobs' acks wait for the next reserve while jobs in hand run (prefetch) only
# when the job about to start is this short on average and the oldest waited no longer:
# a SIGKILL can then only run again jobs that finished about this recently.
ACK_HOLD = 0.005
AHEAD_BELOW = 0.05  # seconds: jobs whose average runtime is below this are fetched ahead
WEIGHT = 0.2  # the moving average's weight of the newest runtime


class FetchAhead:
    """The Worker's fetch-ahead (mixed in); the Worker provides the attributes below."""

    settings: WorkerSettings
    queue: RedisQueue
    queues: list[str]
    prefetched: list[Reserved]
    prefetched_at: float
    pending: list[Pending]
    stopping: bool
    paused: bool
    max_jobs: int
    jobs_done: int
    reporter: Reporter

    def _init_ahead(self) -> None:
        self.runtimes: dict[str, float] = {}  # job name -> moving average of its runtimes
        self.ahead_sent_at = 0.0  # monotonic time the reserve in flight was sent; 0: none
        self.ahead_acks: list[Pending] = []  # the finished jobs acked with it
        self.counting: list[Pending] = []  # finished jobs sent with a count, answer unread
        self.counting_waits = False  # one of them is of a batch not known without progress

    def ran(self, name: str, seconds: float) -> None:
        """Record a job's runtime in its name's moving average."""
        average = self.runtimes.get(name)
        self.runtimes[name] = seconds if average is None else average + WEIGHT * (
            seconds - average)

    def fetch_ahead(self, job: Reserved, name: str) -> None:
        """Send the ack of the finished jobs and the reserve of the next ones now, without
        waiting, if job (named name) is short and nothing else is in hand."""
        if not self._ahead_fits(job, name):
            return
        queue = job.queue
        mine, others, ids, plain, counted, counts = [], [], [], [], [], []
        for p in self.pending:  # (one pass: one finished job, most of the time)
            if p.queue != queue:
                others.append(p)
                continue
            mine.append(p)
            ids.append(p.id)
            if p.count is None:
                plain.append(p)
            else:
                counted.append(p)
                counts.append(p.count)
        if counts and not self.queue.counts_ride_ahead:
            return
        self.with_redis(lambda: self.queue.reserve_ahead(
            queue, default_timeout=self.settings.timeout, ack_ids=ids,
            count=self.settings.prefetch, counts=counts))
        self.pending = others
        # sent again if the reply is lost (those counted: by collect_counts)
        self.ahead_acks = plain
        if counted:
            self._counting(counted)
        self.ahead_sent_at = time.monotonic()

    def _ahead_fits(self, job: Reserved, name: str) -> bool:
        s = self.settings
        # With prefetch N, the next N are asked for once half of those in hand are started.
        if len(self.prefetched) > s.prefetch // 2 or self.ahead_sent_at:
            return False
        if s.once or s.rest or not self.queues:
            return False
        if self.stopping or self.paused or job.queue != self.queues[0]:
            return False
        if self.max_jobs and self.jobs_done + 1 >= self.max_jobs:
            return False
        return self.short(name)

    def short(self, name: str) -> bool:
        """Whether jobs named name are known to take less than AHEAD_BELOW."""
        average = self.runtimes.get(name)
        return average is not None and average < AHEAD_BELOW

    def before_start(self, queue: str, name: str) -> None:
        """Before a job (of queue, named name) starts: the finished jobs' acks
        (hold_acks), and, unless the job is known to be short, the reports held back: a
        master's child sends its finished jobs' counts in batches (slotreport.py), and a
        job that may run long must not keep them until it ends, nor lose them if it is
        killed."""
        self.hold_acks(queue, name)
        if not self.short(name):
            self.reporter.flush()

    def hold_acks(self, queue: str, name: str) -> None:
        """Before a job (of queue, named name) starts: send the acks of queue's finished
        jobs now, in one call whose reply is read later, unless that job is known to be
        shorter than ACK_HOLD, they finished less than ACK_HOLD ago, and other jobs are in
        hand or no reserve sent ahead is in flight (they then ride with the next reserve,
        or go before a later job: with prefetch N, one call per N jobs). A batch count goes
        with its ack, its answer read before the next job (collect_counts; on Redis
        Cluster, or before a job not known to be short, read now); one of a batch known
        to have no progress callback may be held as plain acks are."""
        # (none pending, most of the time: sent ahead with the reserve)
        mine = self.pending and [p for p in self.pending if p.queue == queue]
        if not mine:
            return
        average = self.runtimes.get(name)
        counts = [p.count for p in mine if p.count is not None] if waiting(mine) else []
        # (none that waits: held as plain jobs' acks are, below, to ride with a reserve)
        if counts and not (self.queue.counts_ride_ahead and self.short(name)):
            # now, its reply read: the callbacks it won wait for no long job
            self.with_redis(lambda: self._ack(queue, mine))
        elif counts:  # its answer is read before the next job (collect_counts)
            self.with_redis(lambda: self.queue.ack_nowait(
                queue, *[p.id for p in mine], counts=counts))
            self._counting(mine)
        else:
            if (average is not None and average < ACK_HOLD
                    and (self.prefetched or not self.ahead_sent_at)
                    and mine[0].at > time.monotonic() - ACK_HOLD):
                # They ride with the next reserve, or go before a later job. With a
                # reserve sent ahead and no other job in hand, none comes soon: they go.
                return
            held = [p for p in mine if p.count is not None]
            if held and not self.queue.counts_ride_ahead:
                self.with_redis(lambda: self._ack(queue, mine))
            else:
                self.with_redis(lambda: self.queue.ack_nowait(
                    queue, *[p.id for p in mine], counts=[p.count for p in held]))
                self._counting(held)
        self.pending = [p for p in self.pending if p.queue != queue]

    def collect_counts(self, *, wait: bool = True) -> None:
        """Read the answers of the batch counts sent without waiting (with a reserve sent
        ahead or held acks) and dispatch the callbacks they won; if a reply was lost with
        the connection, their jobs' acks and counts are sent again (a repeated count gets
        the first answer, a repeated ack is a logged no-op). With wait False, counts of
        batches without a progress callback whose replies are not read yet are left for
        a later call (the next reserve reads them)."""
        if not self.counting:
            return
        if not wait and self.queue.counts_unread and not self.counting_waits:
            return
        sent, self.counting, self.counting_waits = self.counting, [], False
        try:
            answers = self.queue.take_counted()
        except redis.RedisError:  # e.g. READONLY after a failover: whether they ran is
            answers = None  # unknown, as after a lost reply
        if answers is None:
            self.pending = self.sent_again(sent) + self.pending
            return
        lifecycle.batch_counted(answers, self.with_redis)

    def _counting(self, sent: list[Pending]) -> None:
        """Note finished jobs sent with counts (and plain acks sent with them), their
        answers unread: whether one is of a batch not known here to have no progress
        callback is noted now, not looked up again before each job."""
        self.counting += sent
        self.counting_waits = self.counting_waits or waiting(sent)

    def collect_ahead(self) -> None:
        """Read the reply of a reserve sent ahead (if one is in flight): its jobs become
        the prefetched ones (none are left: see next_job), held since it was sent."""
        if not self.ahead_sent_at:
            return
        sent_at, acks = self.ahead_sent_at, self.ahead_acks
        self.ahead_sent_at, self.ahead_acks = 0.0, []
        try:
            result = self.queue.ahead_result()
        except redis.RedisError as exc:
            if not (is_topology_fault(exc) or isinstance(exc, TOPOLOGY_ERRORS)
                    or isinstance(exc, redis.ResponseError)):
                raise
            # An error reply (e.g. WRONGTYPE on a key something else wrote): a script is
            # not rolled back, so what it did before the error is as unknown as after a
            # lost reply. The next reserve meets the error again, in with_redis.
            result = None
        if result is None:  # the reply was lost with the connection
            self.lost_ahead(acks)
        elif result.jobs:
            self.prefetched.extend(result.jobs)
            self.prefetched_at = sent_at

    def lost_ahead(self, acks: list[Pending]) -> None:
        """The reply of a reserve sent ahead was lost with its connection: its acks may
        not have run (they ride with the next reserve again: a second ack of a job is a
        logged no-op), and a job it reserved is held under this worker's name without it
        knowing: hand such jobs back, their attempt given back, as soon as Redis answers
        (else they would wait for their reservation to expire and lose an attempt)."""
        self.pending = self.sent_again(acks) + self.pending
        self.with_redis(lambda: self.queue.reclaim_unknown(list(self.settings.queues)))

    def with_redis(self, action: Any) -> Any:  # the Worker's (outages.RedisRetry)
        raise NotImplementedError

    def sent_again(self, acks: list[Pending]) -> list[Pending]:  # the Worker's (outages.RedisRetry)
        raise NotImplementedError

    def _ack(self, queue: str, pending: list[Pending]) -> None:  # the Worker's
        raise NotImplementedError
