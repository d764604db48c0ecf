"""The deploy restart signal: Laravel's queue:restart, made safe.

`supervisor-q restart-workers` stores a generation (a timestamp in seconds) under
`keys.RESTART_KEY`; each child remembers the generation it started with and, between
jobs, exits when the stored one is newer, so its master starts a child that loads
the code now on disk. Rules (ARCHITECTURE.md, reliability rule 6):

- The timestamp comes from the Redis server's clock (TIME), so hosts whose clocks
  disagree still agree on "newer".
- Each signal is strictly greater than the last, even twice in one microsecond.
- Only a strictly newer generation restarts. A missing, deleted or unreadable key
  restarts nobody: Laravel compares with `!=`, so clearing its cache restarts
  every worker; we do not.

Imports only `keys` from the package; never the worker, pool or arbiter.
"""

from __future__ import annotations

import math

import redis

from supervisor_q.queue.keys import RESTART_KEY

# Optimistic-lock retries before giving up. Contention means several deploys
# signalled at the same instant; any one of their values restarts everybody.
_MAX_ATTEMPTS = 50
_MICROS = 1_000_000
# Generations are compared as floats. Above 2**53 microseconds (the year 2255)
# a float no longer tells neighbouring microseconds apart, so "strictly newer"
# would break; such a value can only be garbage and is treated as such.
MAX_GENERATION = 2**53 / _MICROS


class RestartSignalError(RuntimeError):
    """The restart signal could not be stored (only after sustained WATCH conflicts)."""


def parse_generation(raw: bytes | str | float | int | None) -> float | None:
    """A stored value -> a float in [0, MAX_GENERATION), or None for missing or garbage."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        if isinstance(raw, bytes):
            raw = raw.decode("ascii")
        value = float(raw)
    except (UnicodeDecodeError, ValueError, TypeError):
        return None
    return _valid(value)


def _format(micros: int) -> str:
    # Fixed-point text, not repr(float): exact to the microsecond, readable in
    # redis-cli, and parsed identically by every client.
    return f"{micros // _MICROS}.{micros % _MICROS:06d}"


def signal_restart(client: redis.Redis) -> float:
    """Store a new generation (Redis server time, strictly increasing) and return it."""
    with client.pipeline(transaction=True) as pipe:
        for _ in range(_MAX_ATTEMPTS):
            try:
                pipe.watch(RESTART_KEY)
                # After WATCH the pipeline runs commands immediately.
                seconds, micros = pipe.time()
                now = int(seconds) * _MICROS + int(micros)
                previous = parse_generation(pipe.get(RESTART_KEY))
                if previous is not None:
                    # Round, not truncate: the stored text is exact, its float is not.
                    now = max(now, round(previous * _MICROS) + 1)
                text = _format(now)
                pipe.multi()
                pipe.set(RESTART_KEY, text)
                pipe.execute()
                return float(text)
            except redis.WatchError:
                continue  # another signal landed in between: read it and go above it
    raise RestartSignalError(
        f"could not store {RESTART_KEY} after {_MAX_ATTEMPTS} attempts (concurrent writers)")


def read_generation(client: redis.Redis) -> float | None:
    """The stored generation, or None when the key is missing or holds garbage.

    Never raises for bad contents (WRONGTYPE: someone stored a list or hash there).
    Any other error propagates (connection errors, READONLY, LOADING, MOVED...): the
    caller treats it as "unknown", which means "do not restart yet, read again", never
    as "no signal".
    """
    try:
        raw = client.get(RESTART_KEY)
    except redis.ResponseError as exc:
        if str(exc).startswith("WRONGTYPE"):
            return None
        raise
    return parse_generation(raw)


def should_restart(started_with: float | None, current: float | None) -> bool:
    """True only when a valid current generation is newer than the one the child started with."""
    current = _valid(current)
    if current is None:
        return False
    started_with = _valid(started_with)
    # A child that started while no signal existed restarts on the first one.
    return started_with is None or current > started_with


def _valid(value: float | None) -> float | None:
    # Callers may pass values they did not get from parse_generation.
    if value is None or not math.isfinite(value) or not 0 <= value < MAX_GENERATION:
        return None
    return value
