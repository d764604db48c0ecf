"""A master's part in the fleet: heartbeat, notice dead masters, hand their jobs back.

Called from the master's slow tick (once a second); does Redis work every BEAT seconds.

Lease and fencing (the decisions, ARCHITECTURE.md "Fleet"):
- A heartbeat is a lease of LEASE seconds (SUPERVISOR_Q_FLEET_LEASE overrides it).
  It carries the master's status and the jobs its children run (queue, id, attempts,
  as their start reports named them).
- Any master that sees a heartbeat older than the lease claims that master atomically
  -- but only once its own heartbeats have succeeded without a break for one lease, so
  after a Redis outage (or restart) that every master shared, each had a chance to beat
  again before anyone judges the others: a shared outage is not a death
  (registry.CLAIM; one claimer wins) and releases each of its jobs with the attempt
  the dead worker reported and `undo_attempt`: the job runs again elsewhere with its
  attempts unchanged, because the host failed, not the job. A job another worker has
  reserved since (a different attempt) is left alone.
- A master that was only slow finds its id claimed at its next heartbeat: it SIGKILLs
  every worker child's process group at once (command programs keep running), without
  handing their jobs back (the claimer did), and rejoins under a new epoch; its worker
  pools start fresh children. Jobs its children reserved after the claim (still under
  the old id) are handed back at once with their attempt given back (registry's
  claimer could not see them).
- A job a child reserved but had not reported yet (or prefetched) is not in the
  in-flight list: the master's id is in the environment of every child it forks
  (SUPERVISOR_Q_MASTER_ID), each reservation records its holder's token (queue/fencing.py),
  and the claimer also hands back every job held under the dead master's id.
- Fencing: a child of a stalled master that finishes a job after the claim cannot ack,
  release or fail it (its token no longer holds the job); it logs the stale ack. And it
  does not run on past the claim: after each accepted beat the master renews, in memory
  its children share (worker/fence.py), "my lease holds until the beat's send time plus
  the lease, less fence_margin"; a child stops its job hard once that has passed and
  reserves nothing more, before any claimer may hand the job back.
Imports the queue and the registry; never the master (which it is handed).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from supervisor_q import __version__
from supervisor_q.config.schema import ProgramConfig, WorkerProgram
from supervisor_q.fleet import registry, shares
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.faults import Gate
from supervisor_q.queue.fencing import MASTER_ID_ENV
from supervisor_q.queue.pauses import paused_queues
from supervisor_q.worker import fence

if TYPE_CHECKING:
    from supervisor_q.master.arbiter import Arbiter

log = logging.getLogger("supervisor_q.fleet")

BEAT = 2.0  # seconds between heartbeats (and between looks for dead masters)
LEASE = 15.0  # a master silent this long is dead: its jobs are handed back


def lease_from_env() -> float:
    """The lease in seconds: SUPERVISOR_Q_FLEET_LEASE if valid (>= 3 beats), else LEASE."""
    try:
        value = float(os.environ.get("SUPERVISOR_Q_FLEET_LEASE", LEASE))
    except ValueError:
        return LEASE
    return value if value >= 3 * BEAT else LEASE


def new_id() -> str:
    """host:pid:epoch; the epoch is new at every start and after a fence."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class FleetMember:
    def __init__(self, queue: RedisQueue, lease: float | None = None,
                 gate: Gate | None = None) -> None:
        self.queue = queue
        self.gate = gate or Gate()  # the master's: no Redis work while it is closed
        self.lease = lease if lease is not None else lease_from_env()
        self.id = self.new_epoch()
        self.started = time.time()
        self.next_beat = 0.0
        self.redis_error: str | None = None  # the last failed beat's error, until one works
        self.paused_queues: frozenset[str] = frozenset()
        self.sent: list[tuple[str, str, int]] = []  # the jobs in flight at the last beat
        self.shared: dict[str, tuple[str, ...]] = {}  # fleet_max member -> its queues
        self.beating_since: float | None = None  # monotonic start of unbroken good beats
        self.last_ok = 0.0  # monotonic time of the last good beat
        self.orphaned: list[str] = []  # our fenced ids whose held jobs are to hand back
        self.fence = fence.shared()  # made before any child is forked: they inherit it

    def tick(self, now: float, arbiter: Arbiter, status: Callable[[], dict[str, Any]]) -> None:
        """Beat, then look for dead masters, every BEAT seconds (now: monotonic); beat
        at once when the jobs in flight changed, so a death loses as few as possible."""
        jobs = inflight(arbiter)
        if now < self.next_beat and jobs == self.sent:
            return
        if not self.gate.open:  # Redis marked down: a missed beat, as a failed one
            self.beating_since = None
            return
        self.next_beat = now + BEAT
        try:
            self.paused_queues = paused_queues(self.queue.client)
            sent_at = fence.now()  # the real clock the children read, not the arbiter's
            if not registry.beat(self.queue.client, self.id, self.record(status()),
                                 jobs, self.lease):
                self.fenced(arbiter)
                return
            self.fence.renew(sent_at + self.lease - fence.fence_margin(self.lease))
            self.redis_error, self.sent = None, jobs
            self.hand_back_orphans()
            if self.beating_since is None or now - self.last_ok > self.lease:
                self.beating_since = now  # after a failure, or a stall of our own
            self.last_ok = now
            if now - self.beating_since >= self.lease:
                self.reap_dead()
        except redis.RedisError as exc:
            self.beating_since = None
            self.gate.fault(exc, log, "fleet")
            if self.redis_error is None:
                log.warning("fleet heartbeat failed: %s", exc)
            self.redis_error = f"{time.strftime('%H:%M:%S')}: {exc}"

    def new_epoch(self) -> str:
        """A new id, also in the environment the children forked from now inherit."""
        self.id = os.environ[MASTER_ID_ENV] = new_id()
        return self.id

    def record(self, status: dict[str, Any]) -> dict[str, Any]:
        return {**status, "id": self.id, "host": socket.gethostname(), "pid": os.getpid(),
                "version": __version__, "started_at": self.started, "lease": self.lease,
                "paused_queues": sorted(self.paused_queues), "redis_error": self.redis_error}

    def reap_dead(self) -> None:
        """Claim every master whose lease ran out and hand its jobs back."""
        for dead in registry.stale(self.queue.client, self.lease):
            if dead == self.id:
                continue  # our own beat just landed; a stale self is the fence's business
            jobs = registry.claim(self.queue.client, dead)
            if jobs is None:
                continue
            done = sum(self.hand_back(q, i, a) for q, i, a in jobs)
            held = self.queue.hand_back_held(f"{dead}|")  # reserved, not yet reported
            log.warning("fleet: master %s is gone (no heartbeat for %gs); %d of its %d "
                        "reported job(s) and %d unreported one(s) handed back", dead,
                        self.lease, done, len(jobs), held)

    def hand_back(self, queue: str, job_id: str, attempts: int) -> bool:
        return self.queue.release(queue, job_id, 0, expected_attempts=attempts,
                                  undo_attempt=True)

    def fenced(self, arbiter: Arbiter) -> None:
        """Our id was claimed while we were silent: our worker children's jobs belong to
        others now. Kill each worker child's group at once (no hand-back), rejoin as a
        new epoch. Command programs hold no jobs: they are left running."""
        log.error("fleet: this master (%s) was declared dead by another; killing its "
                  "worker children and rejoining", self.id)
        for pool in arbiter.pools.values():
            if not isinstance(pool.program, WorkerProgram):
                continue  # a command program's processes are no part of the fleet's work
            for child in pool.children:
                # settled by the claimer: reaped() must not hand it back (nor its job
                # slot bring it back)
                arbiter.reports.drop_job(pool, child)
                if child.signallable and child.pgid and child.pgid > 0:
                    try:
                        arbiter.spawner.kill(child.pgid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        self.orphaned.append(self.id)
        self.new_epoch()
        self.next_beat = 0.0
        self.hand_back_orphans()

    def hand_back_orphans(self) -> None:
        """Hand back, attempt given back, every job still held under an id of ours that
        was fenced (its children are killed); a failure is retried at the next beat."""
        while self.orphaned:
            held = self.queue.hand_back_held(f"{self.orphaned[0]}|")
            if held:
                log.warning("fleet: %d job(s) of the killed children of %s handed back",
                            held, self.orphaned[0])
            self.orphaned.pop(0)

    def cap_for(self, name: str, program: ProgramConfig,
                held: int) -> Callable[[int, int], int] | None:
        """For a program with autoscale.fleet_max: a function (wanted, floor) -> the most
        it may run now, agreed with the other masters through Redis (fleet/shares.py).
        Redis unavailable: no growth beyond what it runs now (or its floor)."""
        autoscale = program.autoscale
        if autoscale is None or autoscale.fleet_max is None:
            return None
        queues = tuple(getattr(program, "queues", ()))
        member = f"{self.id}/{name}"

        def cap(wanted: int, floor: int) -> int:
            if not self.gate.open:
                return max(floor, held)
            try:
                found = shares.claim(self.queue.client, queues, member, wanted=wanted,
                                     floor=floor, held=held, fleet_max=autoscale.fleet_max,
                                     lease=self.lease)
            except redis.RedisError as exc:
                self.gate.fault(exc, log, "fleet")
                return max(floor, held)
            self.shared[member] = queues
            return found
        return cap

    def leave(self) -> None:
        try:
            for member, queues in self.shared.items():
                shares.give_back(self.queue.client, queues, member)
            registry.leave(self.queue.client, self.id)
        except redis.RedisError:
            pass  # the lease runs out instead; no job of ours is in flight by now


def inflight(arbiter: Arbiter) -> list[tuple[str, str, int]]:
    """(queue, job id, attempts) of every job the master's children reported running."""
    arbiter.reports.sync_all(arbiter.pools.values())  # their job slots as they are now
    return [(c.job.queue, c.job.id, pool.run_of(c).attempts)
            for pool in arbiter.pools.values() for c in pool.children
            if c.job is not None and c.job.id]
