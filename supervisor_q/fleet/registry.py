"""The fleet registry in Redis: heartbeats, the live and gone masters, and claims.

Every key shares the hash tag `{fleet}`, so each script below is one atomic step on
standalone Redis and on Redis Cluster alike (all its keys are declared and in one slot):

    sq:{fleet}:masters          zset  master id -> last heartbeat (ms, server clock)
    sq:{fleet}:gone             zset  master id -> when it was claimed (ms)
    sq:{fleet}:hb:<id>          JSON  the master's status, expires after the lease
    sq:{fleet}:inflight:<id>    JSON  [[queue, job id, attempts], ...] it runs now
    sq:{fleet}:who:<id>         JSON  its host, pid, version, start: kept 24 h after its
                                      last beat, so a gone master stays recognisable

A master's id carries its epoch (a random token taken at start and again after it was
fenced), so a master that comes back after being claimed is a new member. Imports only
`keys` from the package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from supervisor_q.queue.keys import PREFIX

TAG = f"{PREFIX}:{{fleet}}"
MASTERS_KEY = f"{TAG}:masters"
GONE_KEY = f"{TAG}:gone"
GONE_KEPT_MS = 24 * 3600 * 1000  # a claimed id is remembered (and fenced) this long


def heartbeat_key(master_id: str) -> str:
    return f"{TAG}:hb:{master_id}"


def inflight_key(master_id: str) -> str:
    return f"{TAG}:inflight:{master_id}"


def who_key(master_id: str) -> str:
    return f"{TAG}:who:{master_id}"


WHO_FIELDS = ("host", "pid", "version", "started_at")  # of the status, kept in who


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: 1 hb, 2 inflight, 3 masters, 4 gone, 5 who
# ARGV: 1 id, 2 status JSON, 3 in-flight JSON, 4 lease ms, 5 who JSON
# Returns: 1, or 0 when the id was claimed as dead (the caller is fenced: it writes nothing)
HEARTBEAT = _NOW + """
if redis.call('ZSCORE', KEYS[4], ARGV[1]) then return 0 end
local lease = tonumber(ARGV[4])
redis.call('SET', KEYS[1], ARGV[2], 'PX', lease)
redis.call('SET', KEYS[2], ARGV[3], 'PX', 86400000)
redis.call('SET', KEYS[5], ARGV[5], 'PX', 86400000)
redis.call('ZADD', KEYS[3], now, ARGV[1])
return 1
"""

# KEYS: 1 masters
# ARGV: 1 lease ms
# Returns: the ids whose last heartbeat is older than the lease (candidates to claim)
STALE = _NOW + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
"""

# KEYS: 1 hb, 2 inflight, 3 masters, 4 gone
# ARGV: 1 id, 2 ms to keep gone entries
# Returns: the dead master's in-flight JSON when this caller claimed it; false when it
# is alive after all (its heartbeat key exists) or someone else claimed it first.
CLAIM = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return false end
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[2]))
local inflight = redis.call('GET', KEYS[2]) or '[]'
redis.call('DEL', KEYS[2])
return inflight
"""

# KEYS: 1 hb, 2 inflight, 3 masters, 4 who
# ARGV: 1 id
# An orderly exit: the master leaves the fleet (its children's jobs are settled already).
LEAVE = """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


def _keys(master_id: str) -> list[str]:
    return [heartbeat_key(master_id), inflight_key(master_id), MASTERS_KEY, GONE_KEY]


def beat(client: redis.Redis, master_id: str, status: dict[str, Any],
         inflight: list[tuple[str, str, int]], lease: float) -> bool:
    """Write one heartbeat; False when this id was claimed as dead (fenced)."""
    who = {k: status[k] for k in WHO_FIELDS if k in status}
    return bool(client.register_script(HEARTBEAT)(
        keys=[*_keys(master_id), who_key(master_id)],
        args=[master_id, json.dumps(status), json.dumps(inflight), int(lease * 1000),
              json.dumps(who)]))


def leave(client: redis.Redis, master_id: str) -> None:
    client.register_script(LEAVE)(keys=[*_keys(master_id)[:3], who_key(master_id)],
                                  args=[master_id])


def stale(client: redis.Redis, lease: float) -> list[str]:
    """Members whose heartbeat is older than the lease."""
    found = client.register_script(STALE)(keys=[MASTERS_KEY], args=[int(lease * 1000)])
    return [_text(i) for i in found]


def claim(client: redis.Redis, master_id: str) -> list[tuple[str, str, int]] | None:
    """Claim a dead master: its in-flight jobs as (queue, id, attempts), or None when it
    is alive after all or another master claimed it first."""
    raw = client.register_script(CLAIM)(keys=_keys(master_id), args=[master_id, GONE_KEPT_MS])
    if raw is None:
        return None
    try:
        return [(str(q), str(i), int(a)) for q, i, a in json.loads(raw)]
    except (ValueError, TypeError):
        return []


@dataclass(frozen=True)
class Member:
    """One master as `status --all` shows it."""

    id: str
    state: str  # "alive" or "gone"
    seen_ms: int  # last heartbeat, or when it was claimed (server ms)
    status: dict[str, Any] | None  # its last heartbeat (None once expired)
    who: dict[str, Any] | None = None  # a gone master's host, pid, version, started_at

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "seen_ms": self.seen_ms,
                **(self.status or self.who or {})}


def members(client: redis.Redis, gone_within: float = 600.0) -> list[Member]:
    """Every live master, then those gone (heartbeat expired or claimed) in the last
    gone_within seconds. Reads Redis only."""
    live = client.zrange(MASTERS_KEY, 0, -1, withscores=True)
    now_s, now_us = client.time()
    since = (int(now_s) * 1000 + int(now_us) // 1000) - int(gone_within * 1000)
    gone = client.zrangebyscore(GONE_KEY, since, "+inf", withscores=True)
    ids = [_text(i) for i, _ in live]
    records = client.mget([heartbeat_key(i) for i in ids]) if ids else []
    found = []
    for (raw_id, score), record in zip(live, records, strict=True):
        status = _parse(record)
        state = "alive" if status is not None else "gone"
        found.append(Member(_text(raw_id), state, int(score), status))
    found += [Member(_text(i), "gone", int(s), None) for i, s in gone]
    return _with_who(client, found)


def _with_who(client: redis.Redis, found: list[Member]) -> list[Member]:
    """Gone members with what their who record kept (host, pid, version, started_at)."""
    gone = [m for m in found if m.status is None]
    if not gone:
        return found
    whos = dict(zip([m.id for m in gone], client.mget([who_key(m.id) for m in gone]),
                    strict=True))
    return [Member(m.id, m.state, m.seen_ms, None, _parse(whos[m.id]))
            if m.status is None else m for m in found]


def _parse(record: bytes | None) -> dict[str, Any] | None:
    if record is None:
        return None
    try:
        value = json.loads(record)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
