"""Topology faults: Redis being away or moving, as opposed to a job or a command failing.

A connection error, LOADING (a server reading its data), READONLY (a primary demoted
under us), TRYAGAIN, CLUSTERDOWN, MASTERDOWN and NOREPLICAS mean "not now, try again": the worker
and the master retry them with backoff and jitter, log them once per episode (and once
when Redis is back), never count them as a job's exception and never FATAL a pool.
`Outage` is the bookkeeping of one episode; `Gate` the master's rule over it (skip
Redis work while it is down, probe it). Imports nothing from the package.
"""

from __future__ import annotations

import logging
import random
import time

import redis
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)

# MasterDownError is a ClusterDownError; BusyLoadingError (LOADING) a ConnectionError.
TOPOLOGY_FAULTS: tuple[type[BaseException], ...] = (
    redis.ConnectionError, redis.TimeoutError, ReadOnlyError, TryAgainError, ClusterDownError)

BACKOFF_FIRST = 0.05  # seconds before the first retry
BACKOFF_MAX = 5.0


# Replies without a class of their own in redis-py: a primary with min-replicas-to-write
# refusing writes while its replicas are away.
_RETRYABLE_REPLIES = ("NOREPLICAS",)


# RedisCluster's own exception when no node answered its slot-map refresh (no
# RedisError; a class it also raises for misuse, hence the message). cluster.py turns it
# into a ConnectionError for single calls; a pipeline may still raise it.
CLUSTER_UNREACHABLE = "Redis Cluster cannot be connected"


def is_topology_fault(exc: BaseException) -> bool:
    if isinstance(exc, TOPOLOGY_FAULTS):
        return True
    if isinstance(exc, RedisClusterException) and str(exc).startswith(CLUSTER_UNREACHABLE):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(_RETRYABLE_REPLIES)


def describe(exc: BaseException) -> str:
    """One bounded line naming the fault."""
    text = " ".join(str(exc).split())[:200]
    hint = cluster_node_hint(exc)
    if hint:
        return hint
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def cluster_node_hint(exc: BaseException, url: str = "the Redis URL") -> str | None:
    """For a MOVED or ASK reply (a plain client talking to a Redis Cluster node; a
    cluster client follows them itself): one line telling the user which URL to use."""
    if not isinstance(exc, MovedError | AskError):
        return None
    reply = "MOVED" if isinstance(exc, MovedError) else "ASK"
    text = " ".join(str(exc).split())[:80]
    return (f"{url} is a Redis Cluster node: use redis+cluster://HOST:PORT "
            f"(it answered {reply} {text})")


class Outage:
    """One episode of Redis faults: when it began, the last error, the next backoff."""

    def __init__(self) -> None:
        self.failures = 0
        self.since: float | None = None  # wall-clock time of the first fault
        self.error: str | None = None
        self.retry_at = 0.0  # monotonic time before which a poller need not try again

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> bool:
        """Record a fault; True for the first of an episode (the one to log)."""
        self.failures += 1
        self.error = describe(exc)
        if self.since is None:
            self.since = time.time()
            return True
        return False

    def recovered(self) -> bool:
        """Record a success; True if it ends an episode (the one to log)."""
        was_down = self.since is not None
        self.failures = 0
        self.since = None
        self.error = None
        return was_down

    def backoff(self) -> float:
        """Seconds to wait before the next try: exponential, capped, with jitter."""
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(self.failures, 7))
        return delay * (0.5 + random.random() / 2)

    def report(self, exc: BaseException | None, log: logging.Logger, who: str) -> None:
        """For a poller (the master): record a fault (exc) or a success (None), log the
        first fault of an episode and its end, and set retry_at after a fault."""
        if exc is None:
            if self.down and self.recovered():
                log.warning("%s: Redis is back", who)
            return
        if self.failed(exc):
            log.warning("%s: Redis unavailable (%s); retrying", who, describe(exc))
        self.retry_at = time.monotonic() + self.backoff()

    def due(self) -> bool:
        """True unless a poller is still inside the backoff after a fault."""
        return not self.down or time.monotonic() >= self.retry_at

    def as_dict(self) -> dict[str, object]:
        """The status field: {"ok": true} or {"ok": false, "since": epoch, "error": text}."""
        if self.since is None:
            return {"ok": True}
        return {"ok": False, "since": round(self.since, 3), "error": self.error,
                "failures": self.failures}


class Gate(Outage):
    """The master's Redis, as every caller on its single-threaded loop sees it.

    The master's clients time out after a short bound (about a second per call). A
    topology fault (refused, timed out: a server that hangs) marks Redis down; from
    then on, every caller but the probe skips its Redis work (`open` is False) until
    the probe (`due`, the restart-signal read, once the backoff has passed) gets an
    answer. The probe is not due again in the turn a fault was recorded, so one turn
    of the loop waits at most one timed-out call.
    """

    def __init__(self, who: str = "master") -> None:
        super().__init__()
        self.who = who
        self.faulted_this_turn = False

    @property
    def open(self) -> bool:
        """Redis work other than the probe may go now: it is not marked down."""
        return not self.down

    def due(self) -> bool:
        """The probe may try now: Redis is up, or down and its backoff has passed."""
        return not self.faulted_this_turn and super().due()

    def new_turn(self) -> None:
        self.faulted_this_turn = False

    def fault(self, exc: BaseException, log: logging.Logger, who: str) -> bool:
        """A caller's Redis error. A topology fault marks Redis down (True); any other
        error (a script's, a reply's) is logged as one line and leaves it up."""
        if not is_topology_fault(exc):
            log.warning("%s: Redis error: %s", who, describe(exc))
            return False
        self.report(exc, log, who)
        self.faulted_this_turn = True
        return True
