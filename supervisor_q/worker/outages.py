"""The worker's way through Redis faults (and error replies): retry with backoff, one log
line per episode, and, once Redis is back, reclaim the reservations whose replies the
fault swallowed.

A mixin of the Worker (loop.py), like SignalFlags. Imports the queue's fault helpers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import redis

from supervisor_q.queue.cluster import TOPOLOGY_ERRORS
from supervisor_q.queue.faults import Outage, describe, is_topology_fault
from supervisor_q.queue.jobinfo import Done

if TYPE_CHECKING:
    from supervisor_q.queue.backend import RedisQueue
    from supervisor_q.worker.report import Reporter
    from supervisor_q.worker.settings import WorkerSettings

log = logging.getLogger("supervisor_q.worker")

T = TypeVar("T")


class RedisRetry:
    """with_redis() and its helpers; the Worker provides the attributes below."""

    settings: WorkerSettings
    queue: RedisQueue
    reporter: Reporter
    outage: Outage
    stopping: bool
    insisted: bool  # a second stop signal (signals.py)
    gave_up: bool = False  # said so once
    refused: bool = False  # the fault episode is an error reply, not Redis away
    pending: list
    prefetched: list
    queues: list[str]

    def parent_alive(self) -> bool:
        raise NotImplementedError

    def with_redis(self, action: Callable[[], T]) -> T | None:
        """Run a Redis action; on a topology fault (queue/faults.py) or an error reply
        wait with jittered backoff and retry, until it succeeds, or the worker is told to
        stop and has nothing left to send, or is told to stop twice (None then)."""
        while True:
            try:
                value = action()
                if self.outage.down and self.outage.recovered():
                    log.warning("%s: Redis %s", self.settings.label, "accepts the calls again"
                                if self.refused else "is back")
                    self.reclaim_unknown()
                return value
            except redis.RedisError as exc:
                topology = is_topology_fault(exc) or isinstance(exc, TOPOLOGY_ERRORS)
                # An error reply (e.g. WRONGTYPE: something else wrote one of the queue's
                # keys) is waited out as an outage is, in one line: the worker neither
                # dies with a traceback nor drops what it holds.
                if not (topology or isinstance(exc, redis.ResponseError)):
                    raise
                self.sent_again(self.pending)  # the failed call may have carried them
                if self.outage.failed(exc):
                    self.refused = not topology
                    log.warning("%s: Redis %s (%s); retrying", self.settings.label,
                                "unavailable" if topology else "refused a call",
                                describe(exc))
                if self.stopping and not self.pending and not self.prefetched:
                    return None
                if self.insisted:  # told twice to stop: what it holds comes back at expiry
                    if not self.gave_up:
                        log.warning("%s: stopping without Redis: the jobs in hand and the "
                                    "acks not sent wait for their reservations to expire",
                                    self.settings.label)
                    self.gave_up = True
                    return None
                if not self.parent_alive():
                    return None
                self.reporter.flush()  # a finish held back goes before any wait
                self.sleep_interruptibly(self.outage.backoff(), by_second_stop=self.stopping)

    def sent_again(self, acks: list) -> list:
        """acks (pending.Pending), noted as sent again after a lost reply: one that then
        finds its job gone is not logged as a stale ack (the first one most likely landed).
        Returns acks."""
        for p in acks:
            self.queue.resent.add((p.queue, p.id.id if isinstance(p.id, Done) else p.id))
        return acks

    def resend_lost_acks(self) -> None:
        """Send again the acks whose replies a lost connection took (queue/hotpath.py)."""
        if self.queue.lost_acks:
            self.with_redis(self.queue.resend_lost_acks)

    def reclaim_unknown(self) -> None:
        """A reserve may have run on the server while its reply was lost: such jobs are
        held under this worker's name but unknown to it. Make them ready now rather than
        after their reservation expires (a job's timeout later). Best effort."""
        try:
            back = self.queue.reclaim_unknown(list(self.settings.queues))
        except redis.RedisError as exc:
            log.warning("%s: could not reclaim reservations lost in the outage (%s); they "
                        "come back when they expire", self.settings.label, describe(exc))
            return
        if back:
            log.warning("%s: %d job(s) reserved while Redis was failing went back to their "
                        "queue", self.settings.label, back)

    def sleep_interruptibly(self, seconds: float, *, by_second_stop: bool = False) -> None:
        """Sleep, cut short by a stop signal; by_second_stop (already stopping, handing
        jobs back): only by a second one (signals.py: insisted), never a spin."""
        deadline = time.monotonic() + seconds
        while not (self.insisted if by_second_stop else self.stopping):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))



