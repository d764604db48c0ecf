"""Job controls on Redis: the middleware that limits runs (unique jobs: unique.py).

- WithoutOverlapping(key): one run per key at a time.
- Funnel(key, limit): at most `limit` runs per key at a time.
- Throttle(key, allow, every): at most `allow` starts per key in any `every` seconds.
- ThrottlesExceptions(key, max_exceptions, decay): after N consecutive failures,
  stop running the job for `decay` seconds.
Every lock expires on its own (job timeout + margin), so a dead holder frees it.
A job held back by a limit is released without spending an attempt.
Imports middleware and lua_limits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from supervisor_q.jobs.middleware import Call, Key, release_for_limit, resolve_key
from supervisor_q.queue import lua_limits

log = logging.getLogger("supervisor_q.controls")


# -- concurrency ---------------------------------------------------------------

@dataclass(frozen=True)
class Funnel:
    """At most `limit` runs of this key at once; others are released for release_after s
    (or dropped with dont_release). Slots expire after expire_after s (default: the
    job's timeout + a margin), so a killed worker's slot frees itself."""

    key: Key = None
    limit: int = 1
    release_after: float = 1.0
    expire_after: float | None = None
    dont_release: bool = False
    kind: str = "funnel"

    def handle(self, call: Call, proceed: Callable[[], None]) -> None:
        lock = resolve_key(self.key, call, self.kind)
        hold_ms = int((self.expire_after or call.lock_seconds()) * 1000)
        script = call.queue.script(lua_limits.FUNNEL_ACQUIRE)
        wait_ms = int(script(keys=[lock], args=[call.token, self.limit, hold_ms]))
        if wait_ms:
            if self.dont_release:
                log.info("dropped %s %s: %s is busy", call.job.name, call.token, lock)
                return
            release_for_limit(call, self.release_after)
        try:
            proceed()
        finally:
            _quietly(lambda: call.queue.client.zrem(lock, call.token))


def WithoutOverlapping(key: Key = None, *, release_after: float = 1.0,  # noqa: N802
                       expire_after: float | None = None,
                       dont_release: bool = False) -> Funnel:
    """One run per key at a time (a funnel of one), like Laravel's WithoutOverlapping."""
    return Funnel(key, 1, release_after, expire_after, dont_release, kind="overlap")


# -- rates ---------------------------------------------------------------------

@dataclass(frozen=True)
class Throttle:
    """At most `allow` starts per key in any window of `every` seconds (a sliding log);
    a job over the rate is released until a start is allowed again."""

    key: Key = None
    allow: int = 1
    every: float = 1.0

    def handle(self, call: Call, proceed: Callable[[], None]) -> None:
        log_key = resolve_key(self.key, call, "throttle")
        script = call.queue.script(lua_limits.THROTTLE)
        member = f"{call.token}:{time.time_ns()}"
        wait_ms = int(script(keys=[log_key], args=[member, self.allow, int(self.every * 1000)]))
        if wait_ms:
            release_for_limit(call, wait_ms / 1000.0)
        proceed()


@dataclass(frozen=True)
class ThrottlesExceptions:
    """After max_exceptions consecutive failures of this key, hold every job of the key
    back for decay seconds (a circuit breaker for a failing service). The exception
    itself still counts against the job's tries. `when` filters which exceptions count."""

    key: Key = None
    max_exceptions: int = 5
    decay: float = 60.0
    when: Callable[[BaseException], bool] | None = None

    def handle(self, call: Call, proceed: Callable[[], None]) -> None:
        base = resolve_key(self.key, call, "circuit")
        client = call.queue.client
        wait_ms = client.pttl(base + ":open")
        if wait_ms and wait_ms > 0:
            release_for_limit(call, wait_ms / 1000.0)
        try:
            proceed()
        except Exception as exc:
            if self.when is None or self.when(exc):
                _quietly(lambda: self._hit(client, base))
            raise
        _quietly(lambda: client.delete(base + ":count"))

    def _hit(self, client: redis.Redis, base: str) -> None:
        count = client.incr(base + ":count")
        client.pexpire(base + ":count", int(self.decay * 1000) * 2)
        if count >= self.max_exceptions:
            pipe = client.pipeline(transaction=True)
            pipe.set(base + ":open", "1", px=int(self.decay * 1000))
            pipe.delete(base + ":count")
            pipe.execute()


def _quietly(action: Callable[[], object]) -> None:
    """Lock clean-up after the job ran: a Redis error must not turn a finished job into
    a failed one; the lock expires on its own."""
    try:
        action()
    except redis.RedisError as exc:
        log.warning("could not free a job lock (it will expire): %s", exc)
