"""Fleet-wide queue pauses: a Redis set of queue names no worker takes jobs from.

`supervisor-q pause --queue Q` adds Q, `continue --queue Q` removes it. Every worker
(a master's child or a standalone `work`) reads the set once a second beside the
restart signal, so a pause reaches every host within about two seconds, costs no
round trip per job, and outlives master restarts until continued. One key: it works
unchanged on Redis Cluster. Imports only `keys` from the package.
"""

from __future__ import annotations

import redis

from supervisor_q.queue.keys import PREFIX

PAUSED_KEY = f"{PREFIX}:paused"  # set of queue names paused fleet-wide


def pause(client: redis.Redis, queue: str) -> bool:
    """Pause queue everywhere; False if it was paused already."""
    return bool(client.sadd(PAUSED_KEY, queue))


def resume(client: redis.Redis, queue: str) -> bool:
    """Let workers take jobs from queue again; False if it was not paused."""
    return bool(client.srem(PAUSED_KEY, queue))


def paused_queues(client: redis.Redis) -> frozenset[str]:
    """The queues paused fleet-wide; a key of the wrong type pauses nothing."""
    try:
        members = client.smembers(PAUSED_KEY)
    except redis.ResponseError:  # WRONGTYPE: someone stored something else there
        return frozenset()
    return frozenset(m.decode("utf-8", "surrogateescape") if isinstance(m, bytes) else m
                     for m in members)
