"""The failed-job store of a queue: list, find, retry, forget, flush, prune.

A job moves here by the FAIL script (RedisQueue.fail); its record keeps the raw
payload, so `failed retry` queues the very same job again. RedisQueue inherits these
operations; they need only its client, its keys and its script cache. Imports keys
(through the queue), lua and ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from supervisor_q.queue import lua
from supervisor_q.queue.ids import raw as _raw
from supervisor_q.queue.ids import text as _text

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

    from supervisor_q.queue.keys import QueueKeys


def record_json(record: dict) -> str:
    """A failed record as JSON; args too deeply nested to store are left out (the raw
    payload is kept whole). ASCII JSON, so any id or payload bytes survive."""
    try:
        return json.dumps(record)
    except (RecursionError, ValueError):
        return json.dumps({**record, "args": None, "kwargs": None})


class FailedStore:
    """The failed-store operations of RedisQueue (mixed in; see backend.py)."""

    client: redis.Redis

    if TYPE_CHECKING:
        def keys(self, queue: str) -> QueueKeys: ...
        def known_queues(self) -> list[str]: ...
        def script(self, source: str) -> Script: ...

    def failed_records(self, queues: Iterable[str] | None = None) -> list[dict]:
        """Every failed record, newest first."""
        records = []
        for queue in (self.known_queues() if queues is None else queues):
            k = self.keys(queue)
            for raw in self.client.hvals(k.failed_records):
                try:
                    records.append(json.loads(raw))
                except (ValueError, RecursionError):
                    continue
        records.sort(key=lambda r: r.get("failed_at", 0), reverse=True)
        return records

    def find_failed(self, job_id: str) -> dict | None:
        for queue in self.known_queues():
            raw = self.client.hget(self.keys(queue).failed_records, _raw(job_id))
            if raw is not None:
                return json.loads(raw)
        return None

    def retry_failed(self, record: dict) -> bool:
        """Queue a failed job again with its attempts reset."""
        k = self.keys(record["queue"])
        return bool(self.script(lua.RETRY_FAILED)(
            keys=[k.ready, k.notify, k.failed, k.failed_records, k.payloads, k.attempts,
                  k.exceptions, k.enqueued],
            args=[_raw(record["id"]), _raw(record["payload"])],
        ))

    def forget_failed(self, queue: str, job_id: str) -> bool:
        k = self.keys(queue)
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(k.failed, _raw(job_id))
        pipe.hdel(k.failed_records, _raw(job_id))
        removed, _ = pipe.execute()
        return bool(removed)

    def flush_failed(self) -> int:
        count = 0
        for queue in self.known_queues():
            k = self.keys(queue)
            pipe = self.client.pipeline(transaction=True)
            pipe.zcard(k.failed)
            pipe.delete(k.failed, k.failed_records)
            count += int(pipe.execute()[0])
        return count

    def prune_failed(self, older_than: float) -> int:
        """Forget failed jobs that failed before the epoch time older_than."""
        count = 0
        cutoff = int(older_than * 1000)
        for queue in self.known_queues():
            k = self.keys(queue)
            ids = self.client.zrangebyscore(k.failed, "-inf", cutoff)
            for job_id in ids:
                count += self.forget_failed(queue, _text(job_id))
        return count
