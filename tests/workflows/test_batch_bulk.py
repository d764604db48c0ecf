"""Batch.add and retry_batch on the chunked paths: one PUSH_MANY per chunk for added
jobs, one HMGET per queue and one retry script per chunk for a batch's failed jobs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from supervisor_q.jobs import dispatching
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.failed import record_json
from supervisor_q.queue.keys import QUEUES_KEY, QueueKeys, batch_keys
from supervisor_q.workflows.batches import batch, retry_batch
from tests.jobmods.flows import bjob, step


@pytest.fixture
def queue(redis_url: str) -> Iterator[RedisQueue]:
    dispatching._queues.clear()
    yield dispatching.queue_for(redis_url)
    dispatching._queues.clear()


def calls(queue: RedisQueue, command: str) -> int:
    """Successful calls of command since the last CONFIG RESETSTAT (a NOSCRIPT reply to
    redis-py's first EVALSHA of a script is a failed call)."""
    stats = queue.client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


def test_add_queues_the_new_jobs_in_one_call_and_counts_them_first(queue: RedisQueue) -> None:
    b = batch([bjob.s(0)]).dispatch()
    queue.client.config_resetstat()
    ids = b.add([bjob.s(n) for n in range(1, 6)] + [[step.s("a"), step.s("b")]])
    assert calls(queue, "evalsha") + calls(queue, "eval") == 1, "one PUSH_MANY"
    ready = [i.decode() for i in queue.client.lrange(QueueKeys("default").ready, 0, -1)]
    assert ready[1:] == ids and len(set(ids)) == 6
    p = b.progress()
    assert p is not None and (p.total, p.pending) == (8, 8)  # a chain counts its two jobs
    chained = json.loads(queue.client.hget(QueueKeys("default").payloads, ids[-1]))
    assert chained["extra"]["batch"] == b.id and chained["extra"]["chain"][0]["args"] == ["b"]


def put_failed(queue: RedisQueue, name: str, job_id: str) -> None:
    k = QueueKeys(name)
    payload = json.dumps({"id": job_id, "job": "flows.bjob", "queue": name, "args": [1]})
    queue.client.sadd(QUEUES_KEY, name)
    queue.client.zadd(k.failed, {job_id: 1_700_000_000_000})
    queue.client.hset(k.failed_records, job_id, record_json(
        {"id": job_id, "job": "flows.bjob", "queue": name, "payload": payload,
         "failed_at": 1_700_000_000, "reason": "boom", "attempts": 1}))


def test_retry_batch_requeues_every_failed_job_with_one_lookup_per_queue(
        queue: RedisQueue) -> None:
    b = batch([bjob.s(0)]).dispatch()
    failed = [f"f{n}" for n in range(12)]
    for n, job_id in enumerate(failed):
        put_failed(queue, ("qa", "qb", "qc")[n % 3], job_id)
    put_failed(queue, "qa", "other-batch")  # failed, not in this batch: stays failed
    queue.client.sadd(batch_keys(b.id)[2], *failed, "gone")  # "gone": no record left
    queue.client.config_resetstat()
    assert retry_batch(queue, b.id) == 12
    assert calls(queue, "hget") == 0 and calls(queue, "hmget") <= 4
    assert calls(queue, "evalsha") + calls(queue, "eval") == 3, "one script per queue"
    for name in ("qa", "qb", "qc"):
        assert queue.counts(name)["ready"] == 4
    assert queue.failed_page()[1] == 1
