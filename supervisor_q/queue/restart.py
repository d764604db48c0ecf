"""The deploy restart signal: Laravel's queue:restart, made safe.

`supervisor-q restart-workers` stores a generation (a timestamp in seconds) under
`keys.RESTART_KEY`; each child remembers the generation it started with and, between
jobs, exits when the stored one is newer, so its master starts a child that loads
the code now on disk. Rules (ARCHITECTURE.md, reliability rule 6):

- The timestamp comes from the Redis server's clock (TIME), so hosts whose clocks
  disagree still agree on "newer".
- Each signal is strictly greater than the last, even twice in one microsecond
  (one Lua script: TIME, GET, SET on one key, so it works on Redis Cluster too).
- Only a strictly newer generation restarts. A missing, deleted or unreadable key
  restarts nobody: Laravel compares with `!=`, so clearing its cache restarts
  every worker; we do not.

Imports only `keys` from the package; never the worker, pool or arbiter.
"""

from __future__ import annotations

import math

import redis

from supervisor_q.queue.cluster import TOPOLOGY_ERRORS
from supervisor_q.queue.keys import RESTART_KEY

_MICROS = 1_000_000
# Generations are compared as floats. Above 2**53 microseconds (the year 2255)
# a float no longer tells neighbouring microseconds apart, so "strictly newer"
# would break; such a value can only be garbage and is treated as such.
MAX_GENERATION = 2**53 / _MICROS


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


# KEYS: 1 the restart key. ARGV: 1 MAX_GENERATION in microseconds.
# Returns: the new generation as fixed-point text, strictly above the stored one.
# One script on one key: atomic on standalone Redis and on any Cluster node (a
# WATCH/TIME/MULTI pipeline is not allowed through a cluster client).
_SIGNAL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local old = tonumber(redis.call('GET', KEYS[1]) or '')
if old and old == old and old >= 0 and old * 1000000 < tonumber(ARGV[1]) then
  now = math.max(now, math.floor(old * 1000000 + 0.5) + 1)
end
local s = math.floor(now / 1000000)
local text = string.format('%d.%06d', s, now - s * 1000000)
redis.call('SET', KEYS[1], text)
return text
"""


def signal_restart(client: redis.Redis) -> float:
    """Store a new generation (Redis server time, strictly increasing) and return it."""
    text = client.eval(_SIGNAL, 1, RESTART_KEY, 2**53)
    return float(text.decode() if isinstance(text, bytes) else text)


def read_generation(client: redis.Redis) -> float | None:
    """The stored generation, or None when the key is missing or holds garbage.

    Never raises for bad contents. Redis connection errors propagate, a cluster's
    redirection or outage (MOVED, ASK, CLUSTERDOWN, TRYAGAIN, READONLY) as a
    ConnectionError, and any other error reply as it is: the caller treats them as
    "unknown, ask again later" or a real error, never as "no signal".
    """
    try:
        raw = client.get(RESTART_KEY)
    except redis.ResponseError as exc:
        if str(exc).startswith("WRONGTYPE"):  # someone stored a list or hash there
            return None
        if isinstance(exc, TOPOLOGY_ERRORS):
            raise redis.ConnectionError(f"restart signal unreadable: {exc}") from exc
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
