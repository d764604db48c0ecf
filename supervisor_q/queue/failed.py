"""The failed-job store of a queue: list, find, retry, forget, flush, prune.

A job moves here by the FAIL script (RedisQueue.fail); its record keeps the raw
payload, so `failed retry` queues the very same job again. RedisQueue inherits these
operations; they need only its client, its keys and its script cache. Imports keys
(through the queue), lua, ids, payload (peek: a record's arguments) and failedpage (a
page of the list: zset ranks, not every record).

Bulk operations (retry all, prune) work in chunks of CHUNK ids: one HMGET and one
RETRY_FAILED_MANY call (or one ZREM + HDEL transaction) per chunk, each over one
queue's keys, so they run on Redis Cluster too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from supervisor_q.queue import lua
from supervisor_q.queue.failedpage import page_rows
from supervisor_q.queue.ids import raw as _raw
from supervisor_q.queue.payload import peek

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

    from supervisor_q.queue.keys import QueueKeys


CHUNK = 1000  # ids per script call or transaction in bulk retry and prune


def record_json(record: dict) -> str:
    """A failed record as JSON; args too deeply nested to store are left out (the raw
    payload is kept whole). ASCII JSON, so any id or payload bytes survive."""
    try:
        return json.dumps(record)
    except (RecursionError, ValueError):
        return json.dumps({**record, "args": None, "kwargs": None})


def with_arguments(record: dict) -> dict:
    """A stored failed record as readers show it: workers store the arguments once,
    inside the raw payload, so args and kwargs come from there (defaults [] and {} of a
    compact payload restored; None when the payload is not a JSON object). A record that
    carries its own (written by an older worker) keeps them; its None (an older worker's
    record of a compact payload without arguments) is read from the payload too."""
    if record.get("args") is None or record.get("kwargs") is None:
        payload = record.get("payload")
        body = peek(payload) if isinstance(payload, str) else {}
        for name, empty in (("args", []), ("kwargs", {})):
            if record.get(name) is None:
                record[name] = body.get(name, empty) if body else None
    return record


class FailedStore:
    """The failed-store operations of RedisQueue (mixed in; see backend.py)."""

    client: redis.Redis

    if TYPE_CHECKING:
        def keys(self, queue: str) -> QueueKeys: ...
        def known_queues(self) -> list[str]: ...
        def script(self, source: str) -> Script: ...

    def failed_page(self, queues: Iterable[str] | None = None, start: int = 0,
                    count: int = 50) -> tuple[list[dict], int]:
        """Rows start .. start+count-1 of the failed list (newest first, as
        failed_records orders them), and how many failed jobs there are in all. Costs
        O(log n) per queue plus the page, not O(every record): see failedpage.py."""
        names = sorted(self.known_queues() if queues is None else queues)
        rows, total = page_rows(self.client, [self.keys(q).failed for q in names],
                                start, count)
        by_queue: dict[int, list[bytes]] = {}
        for index, job_id in rows:
            by_queue.setdefault(index, []).append(job_id)
        found: dict[tuple[int, bytes], dict] = {}
        for index, ids in by_queue.items():
            raws = self.client.hmget(self.keys(names[index]).failed_records, ids)
            for job_id, raw in zip(ids, raws, strict=True):
                record = _shown(raw)
                if record is not None:
                    found[(index, job_id)] = record
        return [found[row] for row in rows if row in found], total

    def failed_records(self, queues: Iterable[str] | None = None) -> list[dict]:
        """Every failed record, newest first."""
        records = []
        for queue in (self.known_queues() if queues is None else queues):
            k = self.keys(queue)
            for raw in self.client.hvals(k.failed_records):
                record = _shown(raw)
                if record is not None:
                    records.append(record)
        records.sort(key=lambda r: r.get("failed_at", 0), reverse=True)
        return records

    def find_failed(self, job_id: str) -> dict | None:
        for queue in self.known_queues():
            raw = self.client.hget(self.keys(queue).failed_records, _raw(job_id))
            if raw is not None:
                return _shown(raw)
        return None

    def failed_records_of(self, ids: Iterable[bytes | str], chunk: int = CHUNK) -> list[dict]:
        """The failed records of these ids, whatever their queues: per known queue one
        HMGET per chunk of the ids not found yet (not shown: for retry_failed_many)."""
        left = [i if isinstance(i, bytes) else _raw(i) for i in ids]
        records: list[dict] = []
        for queue in self.known_queues():
            if not left:
                break
            k = self.keys(queue)
            missing: list[bytes] = []
            for at in range(0, len(left), chunk):
                part = left[at:at + chunk]
                for job_id, raw in zip(part, self.client.hmget(k.failed_records, part),
                                       strict=True):
                    record = _parse(raw)
                    if record is None:
                        missing.append(job_id)
                    else:
                        records.append(record)
            left = missing
        return records

    def retry_failed_many(self, records: Iterable[dict], chunk: int = CHUNK) -> int:
        """Queue failed jobs again, chunk by chunk per queue (one script call per chunk);
        returns how many were still failed (and are queued now)."""
        by_queue: dict[str, list[dict]] = {}
        for record in records:
            by_queue.setdefault(record["queue"], []).append(record)
        done = 0
        for queue, group in by_queue.items():
            for at in range(0, len(group), chunk):
                done += self._retry_chunk(queue, group[at:at + chunk])
        return done

    def retry_all_failed(self, queues: Iterable[str] | None = None,
                         chunk: int = CHUNK) -> int:
        """Queue every failed job (of queues, or of all) again, oldest first: one ZRANGE
        of the ids, then per chunk one HMGET of the records and one script call."""
        done = 0
        for queue in (self.known_queues() if queues is None else queues):
            k = self.keys(queue)
            ids = self.client.zrange(k.failed, 0, -1)
            for at in range(0, len(ids), chunk):
                part = ids[at:at + chunk]
                raws = self.client.hmget(k.failed_records, part)
                records = [r for r in map(_parse, raws) if r is not None]
                done += self._retry_chunk(queue, records)
        return done

    def _retry_chunk(self, queue: str, records: list[dict]) -> int:
        if not records:
            return 0
        k = self.keys(queue)
        args: list = []
        for record in records:
            args += [_raw(record["id"]), _raw(record["payload"])]
        return int(self.script(lua.RETRY_FAILED_MANY)(
            keys=[k.ready, k.notify, k.failed, k.failed_records, k.payloads, k.attempts,
                  k.exceptions, k.enqueued], args=args))

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

    def prune_failed(self, older_than: float, chunk: int = CHUNK) -> int:
        """Forget failed jobs that failed before the epoch time older_than: per queue,
        one ZRANGEBYSCORE, then one ZREM + HDEL transaction per chunk of ids."""
        count = 0
        cutoff = int(older_than * 1000)
        for queue in self.known_queues():
            k = self.keys(queue)
            ids = self.client.zrangebyscore(k.failed, "-inf", cutoff)
            for at in range(0, len(ids), chunk):
                part = ids[at:at + chunk]
                pipe = self.client.pipeline(transaction=True)
                pipe.zrem(k.failed, *part)
                pipe.hdel(k.failed_records, *part)
                count += int(pipe.execute()[0])
        return count


def _parse(raw: bytes | None) -> dict | None:
    """A stored failed record, or None (gone, or not JSON)."""
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def _shown(raw: bytes | None) -> dict | None:
    """_parse, with the arguments from the payload (with_arguments): for the readers
    that show records, not for bulk retry, which needs only the payload."""
    record = _parse(raw)
    return with_arguments(record) if record is not None else None
