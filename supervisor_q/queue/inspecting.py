"""Read-only views of a queue (sizes, counts, load) and `queue clear`, for RedisQueue.

Mixed into RedisQueue like failed.FailedStore; every call touches the keys of one
queue (one hash tag), so each works on Redis Cluster. Imports keys, lua and ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor_q.queue import lua
from supervisor_q.queue.ids import raw as _rawid
from supervisor_q.queue.ids import text as _text
from supervisor_q.queue.keys import QUEUES_KEY

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

    from supervisor_q.queue.keys import QueueKeys


class Inspecting:
    """The inspecting operations of RedisQueue (mixed in; see backend.py)."""

    client: redis.Redis

    if TYPE_CHECKING:
        def keys(self, queue: str) -> QueueKeys: ...
        def script(self, source: str) -> Script: ...

    def size(self, queue: str) -> int:
        """Jobs ready to run now."""
        return int(self.client.llen(self.keys(queue).ready))

    def counts(self, queue: str) -> dict[str, int]:
        """Ready, delayed, reserved and failed counts of one queue."""
        k = self.keys(queue)
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(k.ready)
        pipe.zcard(k.delayed)
        pipe.zcard(k.reserved)
        pipe.zcard(k.failed)
        ready, delayed, reserved, failed = pipe.execute()
        return {"ready": ready, "delayed": delayed, "reserved": reserved, "failed": failed}

    def load(self, queue: str) -> tuple[int, float]:
        """(ready jobs, seconds the oldest ready job has waited)."""
        k = self.keys(queue)
        length, waited_ms = self.script(lua.LOAD)(keys=[k.ready, k.enqueued])
        return int(length), int(waited_ms) / 1000.0

    def clear(self, queue: str) -> int:
        """Delete every waiting, delayed and reserved job of queue; return how many."""
        k = self.keys(queue)
        pipe = self.client.pipeline(transaction=True)
        pipe.hlen(k.payloads)
        pipe.delete(*k.all())
        count, _ = pipe.execute()
        return int(count)

    def reserved_job(self, queue: str, job_id: str) -> tuple[str, int, int] | None:
        """(payload, attempts, exceptions) of a job that is still reserved, else None."""
        k = self.keys(queue)
        job_id = _rawid(job_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.zscore(k.reserved, job_id)
        pipe.hget(k.payloads, job_id)
        pipe.hget(k.attempts, job_id)
        pipe.hget(k.exceptions, job_id)
        score, payload, attempts, exceptions = pipe.execute()
        if score is None or payload is None:
            return None
        return _text(payload), int(attempts or 0), int(exceptions or 0)

    def known_queues(self) -> list[str]:
        return sorted(_text(q) for q in self.client.smembers(QUEUES_KEY))
