"""`autoscale.fleet_max`: masters serving the same queues agree on their shares in Redis.

Per queue set (the program's queues, sorted), one hash tag holds two keys:

    sq:{fleetmax:<q1,q2>}:shares   hash  member -> processes it may run
    sq:{fleetmax:<q1,q2>}:leases   zset  member -> when its share lapses (ms, server clock)

A member is "<master id>/<program>". Every second (the master's slow tick) each master
asks with SHARE for the most it may run: fleet_max minus the other live shares, never
below its own floor; and it records in the same atomic step the share it keeps,
max(what it will run, what it runs now), so the shares never undercount the processes
(children asked to stop still count until they exited). A dead master's share lapses with
its lease (the fleet lease), after which others may grow into it. Imports keys only.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from supervisor_q.queue.keys import PREFIX


def share_keys(queues: Sequence[str]) -> list[str]:
    tag = f"{PREFIX}:{{fleetmax:{','.join(sorted(set(queues)))}}}"
    return [f"{tag}:shares", f"{tag}:leases"]


# KEYS: 1 shares, 2 leases
# ARGV: 1 member, 2 wanted (the size autoscale wants), 3 floor, 4 held (children now),
#       5 fleet_max, 6 lease ms
# Returns: the cap: the most this member may run now (>= floor).
SHARE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('HDEL', KEYS[1], m)
  redis.call('ZREM', KEYS[2], m)
end
local others = 0
local shares = redis.call('HGETALL', KEYS[1])
for i = 1, #shares, 2 do
  if shares[i] ~= ARGV[1] then others = others + tonumber(shares[i + 1]) end
end
local cap = math.max(tonumber(ARGV[3]), tonumber(ARGV[5]) - others)
local share = math.max(math.min(tonumber(ARGV[2]), cap), tonumber(ARGV[4]))
local lease = tonumber(ARGV[6])
redis.call('HSET', KEYS[1], ARGV[1], share)
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * lease)
redis.call('PEXPIRE', KEYS[2], 2 * lease)
return cap
"""

# KEYS: 1 shares, 2 leases   ARGV: 1 member.  An orderly exit gives the share back.
GIVE_BACK = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


def claim(client: redis.Redis, queues: Sequence[str], member: str, *, wanted: int,
          floor: int, held: int, fleet_max: int, lease: float) -> int:
    """The most processes member may run now; records its share (see SHARE)."""
    return int(client.register_script(SHARE)(
        keys=share_keys(queues),
        args=[member, wanted, floor, held, fleet_max, int(lease * 1000)]))


def give_back(client: redis.Redis, queues: Sequence[str], member: str) -> None:
    client.register_script(GIVE_BACK)(keys=share_keys(queues), args=[member])


def shares(client: redis.Redis, queues: Sequence[str]) -> dict[str, int]:
    """member -> share, as recorded (lapsed leases included until the next SHARE)."""
    raw = client.hgetall(share_keys(queues)[0])
    return {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}
