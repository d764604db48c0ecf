"""The worker loop: reserve -> run under a deadline -> ack/release/fail -> recycle?

Runs in a child forked by the master, or as `supervisor-q work` (in a child of its
guard process, guard.py). It never imports the arbiter. The ack of a finished job
rides in the same Redis round trip as the reserve of the next one.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from dataclasses import dataclass, field

from supervisor_q import exitcodes
from supervisor_q.jobs.context import (
    FailJob,
    JobContext,
    ReleaseJob,
    reset_current_job,
    set_current_job,
)
from supervisor_q.jobs.registry import REGISTRY, Job, Registry, UnknownJob, publish_registry
from supervisor_q.logs import clock_time
from supervisor_q.proctitle import set_title
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, Reserved, ReserveResult
from supervisor_q.queue.faults import Outage, describe, is_topology_fault
from supervisor_q.queue.jobinfo import Done
from supervisor_q.worker import jobrecord, lifecycle, outcome
from supervisor_q.worker.ahead import FetchAhead
from supervisor_q.worker.checks import Checks
from supervisor_q.worker.fence import Fenced, Lease
from supervisor_q.worker.outages import RedisRetry
from supervisor_q.worker.pending import Pending
from supervisor_q.worker.report import NullReporter, Reporter
from supervisor_q.worker.settings import WorkerSettings
from supervisor_q.worker.signals import SignalFlags
from supervisor_q.worker.timeouts import JobTimeout, alarm

log = logging.getLogger("supervisor_q.worker")

# Longest single blocking wait, so SIGTERM and the restart signal are seen within a second.
MAX_BLOCK = 1.0
# A prefetched job not started within this long goes back to the queue: well inside
# the reservation margin (backend.RESERVATION_MARGIN), so it can never run twice.
PREFETCH_HOLD = 1.0


@dataclass
class Worker(SignalFlags, Checks, RedisRetry, Fenced, FetchAhead):
    settings: WorkerSettings
    queue: RedisQueue
    registry: Registry = field(default_factory=lambda: REGISTRY)
    reporter: Reporter = field(default_factory=NullReporter)
    started_with: float | None = None  # restart generation seen at start
    parent_pid: int | None = None  # exit when the master is gone
    follows_restart: bool = True  # False: a zygote's child, replaced by the master on deploy
    fence: Lease | None = None  # the master's fleet lease (fence.py); None: standalone

    def __post_init__(self) -> None:
        self.jobs_done = 0
        self.pending: list[Pending] = []  # finished jobs whose ack rides with the next reserve
        self.started = time.monotonic()
        self._init_checks()
        self._init_ahead()
        self.outage = Outage()  # Redis faults: one log line per episode
        self.prefetched: list[Reserved] = []
        self.prefetched_at = 0.0  # monotonic time the prefetched jobs were reserved
        self.queues = list(self.settings.queues)  # less those paused fleet-wide (pauses.py)
        rnd = random.Random()
        j = self.settings.jitter
        self.max_jobs = int(self.settings.max_jobs * (1 - j * rnd.random()))
        if self.settings.max_jobs and self.max_jobs < 1:
            self.max_jobs = 1
        self.max_time = self.settings.max_time * (1 - j * rnd.random())
        lifecycle.bind(self.queue)  # chains, batches and locks use this worker's Redis
        jobrecord.identify(self.queue, self.settings.keep_jobs_max)
        self.job_started_at = 0.0
        self.shown: tuple | None = None  # the job the title shows (_process)

    # -- the loop --------------------------------------------------------------

    def run(self) -> int:
        """Work until a stop or recycle reason; return the exit code."""
        # Declared options for dispatch by name in processes that cannot import the jobs.
        self.with_redis(lambda: publish_registry(self.queue, self.registry))
        for queue in self.settings.queues:  # in the index (failed listing) even if jobs
            self.with_redis(lambda q=queue: self.queue.index_queue(q))  # came round it
        lifecycle.check_keys()  # a bad encryption key: said at start
        self.reporter.ready(self.started_with)
        self.reporter.hold_finishes(self.hold_margin())
        self.start_fence()
        self.title("idle")
        code, checked = exitcodes.OK, False  # checked: recycle_reason's checks just ran
        while True:
            if self.stopping or not self.parent_alive():
                break
            reason, checked = None if checked else self.idle_checks(), False
            if reason is not None:
                code = reason
                break
            job = self.next_job()
            if job is None:
                if self.settings.stop_when_empty and not self.paused and not self.stopping:
                    break
                continue
            timed_out = self.process(job)
            if timed_out:
                code = exitcodes.TIMEOUT
                break
            if self.settings.once:
                break
            reason, checked = self.recycle_reason(), not self.settings.rest
            if reason is not None:
                code = reason
                break
            if self.settings.rest:
                self.reporter.flush()
                self.sleep_interruptibly(self.settings.rest)  # a stop ends the rest
        self.shutdown()
        return code

    def shutdown(self) -> None:
        """Hand back prefetched jobs and send the pending ack before exiting."""
        self.reporter.flush()
        self.hand_back_prefetched()
        self.flush_pending()
        self.title("exiting")

    def hand_back_prefetched(self) -> None:
        """Release reserved-but-unstarted jobs at once, their attempt not counted."""
        self.collect_ahead()  # those fetched ahead too
        for job in self.prefetched:
            self.with_redis(lambda j=job: self.queue.release(j.queue, j.id, undo_attempt=True))
        self.prefetched.clear()

    def flush_pending(self) -> None:
        """Ack every finished job now (a separate round trip per queue)."""
        self.resend_lost_acks()
        self.collect_counts()  # (a lost one goes back to pending)
        for queue in {p.queue for p in self.pending}:
            mine = [p for p in self.pending if p.queue == queue]
            self.with_redis(lambda q=queue, m=mine: self._ack(q, m))
        self.pending = []

    def _ack(self, queue: str, pending: list[Pending]) -> None:
        """Ack pending jobs of queue, their batch counts in the same round trip."""
        counts = [p.count for p in pending if p.count is not None]
        _, done = self.queue.ack_counting(queue, [p.id for p in pending], counts)
        lifecycle.batch_counted(done, self.with_redis)

    def next_job(self) -> Reserved | None:
        """Reserve from the first non-empty queue in priority order, or wait a while."""
        lifecycle.looping()
        if self.queue.lost_acks:
            self.resend_lost_acks()
        if not self.prefetched:  # jobs fetched ahead wait behind those prefetched before
            self.collect_ahead()
        if self.counting:
            self.collect_counts(wait=False)  # the callbacks the last counts won
        if self.fence is not None and self.fence_closed():  # the master's lease ran out:
            return None  # take no job (a standalone worker has no lease)
        if self.prefetched:
            if time.monotonic() - self.prefetched_at < PREFETCH_HOLD:
                return self.prefetched.pop(0)
            # Jobs waiting behind a slow one must not outlive their reservation (its
            # margin is only a few seconds): hand them back untouched and reserve afresh.
            self.reporter.flush()
            self.hand_back_prefetched()
        if self.paused or not self.queues:
            self.reporter.flush()
            self.flush_pending()
            self.title("paused")
            self.sleep_interruptibly(MAX_BLOCK)
            return None
        result = self.with_redis(self._reserve_in_order)
        if result is None:
            return None
        found, next_delayed = result
        if found:
            return found
        wait = min(MAX_BLOCK, self.settings.sleep)
        if next_delayed is not None:
            wait = min(wait, max(next_delayed, 0.005))
        if self.settings.stop_when_empty:
            return None
        self.title("idle")
        self.reporter.flush()  # a blocking wait: the last finish goes now
        return self.wait_for_jobs(wait)

    def wait_for_jobs(self, seconds: float) -> Reserved | None:
        """Block on the queues' wake-up tokens, reserving from the first queue the moment
        one arrives; a stop or pause signal cuts the wait short."""
        if self._leave_wait():
            return None
        result: ReserveResult | None = self.with_redis(lambda: self.queue.wait_and_reserve(
            self.queues, seconds, default_timeout=self.settings.timeout,
            count=self.settings.prefetch, wake_fd=self.wake_fd, leave=self._leave_wait))
        if result is None or not result.jobs:
            return None
        if self._leave_wait():  # told so while the reserve was on its way: hand it back now
            self.prefetched.extend(result.jobs)
            self.hand_back_prefetched()
            return None
        self.prefetched.extend(result.jobs[1:])
        self.prefetched_at = time.monotonic()
        return result.jobs[0]

    def _leave_wait(self) -> bool:
        return self.stopping or self.paused

    def _reserve_in_order(self) -> tuple[Reserved | None, float | None]:
        next_delayed: float | None = None
        count = self.settings.prefetch
        for queue in self.queues:
            mine = [p for p in self.pending if p.queue == queue]
            _, result = self.queue.reserve(
                queue, default_timeout=self.settings.timeout, ack_ids=[p.id for p in mine],
                count=count, counts=[p.count for p in mine if p.count is not None])
            if mine:
                self.pending = [p for p in self.pending if p.queue != queue]
                lifecycle.batch_counted(result.counted, self.with_redis)
            if result.jobs:
                self.flush_pending()  # the ack belonged to a lower-priority queue
                self.prefetched.extend(result.jobs[1:])
                self.prefetched_at = time.monotonic()
                return result.jobs[0], None
            if result.next_delayed_in is not None:
                nd = result.next_delayed_in
                next_delayed = nd if next_delayed is None else min(next_delayed, nd)
        self.flush_pending()
        return None, next_delayed

    def process(self, job: Reserved) -> bool:
        """Run one reserved job to its outcome. Returns True if it timed out."""
        self.hold(True)  # past the master's lease it stops here, or mid-job (fence.py)
        try:
            return self._process(job)
        finally:
            self.hold(False)

    def _process(self, job: Reserved) -> bool:
        # A short job's successor is reserved meanwhile: asked for first, so the server
        # works on it while this job is decoded too (by the name the payload shows).
        hinted = payloads.job_name_of(job.payload)
        if hinted is not None:
            self.fetch_ahead(job, hinted)
        ready = self.ready_to_run(job)
        if ready is None:
            return False
        decoded, target, limits = ready
        if hinted != decoded.job:
            self.fetch_ahead(job, decoded.job)
        if self.stopping:  # told while a Redis call above waited (an outage): not begun
            self.prefetched.insert(0, job)  # handed back with the others, uncounted
            return False
        self.before_start(job.queue, decoded.job)  # acks and reports that must go first
        held = time.monotonic() - self.prefetched_at  # reserved, then held until now
        self.reporter.job_started(job.id, decoded.job, job.queue, limits.timeout, job.attempts,
                                  job.waited + max(0.0, held))
        # The start time (to the second) shows how long the job has run; the title is only
        # made and rewritten when it changes, so a burst of short jobs costs one a second.
        self.job_started_at = started = jobrecord.started(job)
        shown = (decoded.job, job.queue, int(started))
        if shown != self.shown:
            self.title(f"job {decoded.job} on {job.queue} since {clock_time(started)}", shown)
        token = set_current_job(JobContext(job.id, decoded.job, job.queue, job.attempts,
                                           decoded))
        self.outcome = "done"  # the settling paths below say otherwise (report.OUTCOMES)
        began = time.monotonic()
        try:
            timed_out = self.run_job(job, decoded, target, limits)
        finally:
            reset_current_job(token)
            self.reporter.job_finished(job.id, self.outcome)
        self.ran(decoded.job, time.monotonic() - began)
        self.jobs_done += 1
        return timed_out

    def ready_to_run(self, job: Reserved) -> tuple[payloads.Payload, Job, outcome.Limits] | None:
        """The job's payload, registered job and limits; None when it cannot run (it was
        failed here, or its reservation lapsed and another attempt owns it)."""
        s = self.settings
        try:
            decoded, target = lifecycle.admit(job.id, job.payload, self.registry)
        except (payloads.MalformedPayload, UnknownJob) as exc:
            self.fail(job, None, payloads.printable(str(exc), 1000), None)
            self.reporter.job_refused(job.id, payloads.job_name_of(job.payload)
                                      or "(unreadable)", job.queue, job.attempts, job.waited)
            return None
        # Declared @job options apply even to a payload that does not carry them.
        limits = outcome.resolve_limits(decoded, tries=s.tries, backoff=s.backoff,
                                        timeout=s.timeout, declared=target.options)
        too_late = outcome.before_run(limits, job.attempts, time.time())
        if too_late:  # counted as failed too: the metrics agree with the failed store
            self.fail(job, decoded, too_late, None)
            self.reporter.job_refused(job.id, decoded.job, job.queue, job.attempts, job.waited)
            return None
        if decoded.timeout is None and limits.timeout > s.timeout:
            # reserve computed the deadline from the program's timeout: make it cover
            # the declared one, or another worker would take the job while it runs.
            self.reporter.flush()
            held = self.with_redis(lambda: self.queue.extend(job.queue, job.id, limits.timeout,
                                                             job.attempts))
            if not held:
                return None
        return decoded, target, limits

    def run_job(self, job: Reserved, decoded: payloads.Payload, target: Job,
                limits: outcome.Limits) -> bool:
        """Run the job under its deadline, then ack, release or fail it. True if it timed
        out."""
        try:
            with alarm(limits.timeout) as timer:
                self.in_job = True
                try:
                    value = lifecycle.invoke(target, decoded)
                    timer.returned = True  # at once: an alarm handled after this is late
                finally:
                    self.in_job = False
        except JobTimeout:
            self.settle(job, decoded, outcome.after_timeout(limits, job.attempts, time.time()),
                        None, count_exception=False)
            self.outcome = "timeout"
            return True
        except ReleaseJob as exc:
            delay, self.outcome = exc.delay, "released"
            self.with_redis(lambda: self.queue.release(job.queue, job.id, delay))
        except FailJob as exc:
            self.fail(job, decoded, exc.reason, None)
        except KeyboardInterrupt:
            # A second Ctrl-C: hand the job back untouched (its attempt too) and stop.
            self.with_redis(lambda: self.queue.release(job.queue, job.id, 0,
                                                       undo_attempt=True))
            self.stopping, self.outcome = True, "released"
        except Exception as exc:  # the job's own error: retry or fail, the worker goes on
            if is_topology_fault(exc):  # Redis away or moving (e.g. in middleware): not it
                self.topology_fault(job, exc)
                return False
            error = f"{type(exc).__name__}: {exc}"
            decision = outcome.after_exception(limits, job.attempts, job.exceptions + 1,
                                               time.time(), error)
            self.settle(job, decoded, decision, traceback.format_exc(), count_exception=True)
        else:
            self.succeeded(job, decoded, jobrecord.done_entry(
                job, decoded, self.job_started_at, value, self.settings.keep_jobs,
                target.options.keep_result))
        return False

    def topology_fault(self, job: Reserved, exc: BaseException) -> None:
        """Hand the job back after a backoff, neither its attempt nor an exception counted."""
        if self.outage.failed(exc):
            log.warning("%s: Redis unavailable during job %s (%s); it goes back",
                        self.settings.label, payloads.printable(job.id, 100), describe(exc))
        delay, self.outcome = self.outage.backoff(), "released"
        self.with_redis(lambda: self.queue.release(job.queue, job.id, delay, undo_attempt=True))

    def succeeded(self, job: Reserved, decoded: payloads.Payload, done: str | Done) -> None:
        count = lifecycle.succeeded(decoded, count_batch=False) if decoded.extra else None
        # the ack (and the batch count) rides with the next reserve (or see
        # FetchAhead.hold_acks when the next job is already here)
        self.pending.append(Pending(job.queue, done, count, time.monotonic()))

    def settle(self, job: Reserved, decoded: payloads.Payload, decision: outcome.Decision,
               trace: str | None, *, count_exception: bool) -> None:
        if decision.release:
            self.outcome = "released"
            self.with_redis(lambda: self.queue.release(job.queue, job.id, decision.delay,
                                                       count_exception=count_exception))
        else:
            self.fail(job, decoded, decision.reason, trace)

    def fail(self, job: Reserved, decoded: payloads.Payload | None, reason: str,
             trace: str | None) -> None:
        self.reporter.flush()
        record, self.outcome = jobrecord.failed_entry(job, reason, trace), "failed"
        log.warning("%s: job %s failed: %s", self.settings.label,
                    payloads.loggable(job.id, 100), payloads.loggable(reason, 400))
        moved = self.with_redis(lambda: self.queue.fail(job.queue, job.id, record))
        if moved:
            lifecycle.failed(decoded, reason)

    def title(self, state: str, shown: tuple | None = None) -> None:
        """Show state in the process title; shown: the job's (name, queue, second)."""
        self.shown = shown
        set_title(f"supervisor-q {self.settings.label} {state}")
