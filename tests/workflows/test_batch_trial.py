"""What a user trial of batches found: a bad item in Batch.add, a batch dispatch cut off
by a lost server, and an empty batch. Real workers, a real server stopped mid-dispatch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from supervisor_q.jobs import dispatching
from supervisor_q.jobs.bulk import BulkDispatchError
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.bulk import ChunkLost
from supervisor_q.queue.keys import BATCH_INDEX_KEY, QueueKeys
from supervisor_q.queue.payload import NotSerialisable
from supervisor_q.workflows.batches import Batch, batch
from tests.conftest import RedisHandle
from tests.helpers import wait_until
from tests.jobmods.flows import bjob, finally_cb, then_cb
from tests.workers import results, running


@pytest.fixture
def queue(redis_url: str) -> Iterator[RedisQueue]:
    dispatching._queues.clear()
    yield dispatching.queue_for(redis_url)
    dispatching._queues.clear()


def callbacks(redis_url: str, kind: str, batch_id: str) -> list[dict]:
    return [r for r in results(redis_url, kind) if r["info"]["id"] == batch_id]


def test_add_with_a_bad_item_counts_and_queues_nothing_and_the_batch_finishes(
        redis_url: str, queue: RedisQueue) -> None:
    with pytest.raises(NotSerialisable):
        batch([bjob.s(1), bjob.s(object())]).dispatch()
    assert queue.client.zcard(BATCH_INDEX_KEY) == 0, "a bad item: no batch made at all"
    b = batch([bjob.s(0)], then=then_cb.s()).dispatch()
    with pytest.raises(NotSerialisable):
        b.add([bjob.s(1), bjob.s(object())])
    p = b.progress()
    assert p is not None and (p.total, p.pending) == (1, 1), "nothing of the call counted"
    assert queue.counts("default")["ready"] == 1, "nothing of the call queued"
    with running(redis_url, 1):
        wait_until(lambda: callbacks(redis_url, "then", b.id), timeout=15)
    p = b.progress()
    assert p is not None and p.finished and (p.total, p.pending) == (1, 0)


def test_a_batch_dispatch_cut_off_names_the_batch_and_uncounts_what_did_not_land(
        redis_url: str, queue: RedisQueue, redis_db: RedisHandle,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pushes = []
    real = RedisQueue.push_many

    def push_many(self: RedisQueue, name: str, jobs: list) -> None:
        pushes.append(name)
        if name == "cut-b":  # the first queue's chunk is in; the second's surely not
            raise ChunkLost("ConnectionError: server went away", False, "marker")
        real(self, name, jobs)

    monkeypatch.setattr(RedisQueue, "push_many", push_many)
    items = [bjob.s(n).on("cut-a") for n in range(3)] + [bjob.s(n).on("cut-b") for n in range(2)]
    with pytest.raises(BulkDispatchError) as caught:
        batch(items, then=then_cb.s().on("cut-a"), finally_=finally_cb.s().on("cut-a")).dispatch()
    e = caught.value
    assert pushes == ["cut-a", "cut-b"]
    assert e.batch_id is not None and isinstance(e.batch, Batch) and e.batch.id == e.batch_id
    assert len(e.landed) == 3 and len(e.not_landed) == 2 and e.uncounted == 2
    p = e.batch.progress()
    assert p is not None and (p.total, p.pending) == (3, 3)
    monkeypatch.setattr(RedisQueue, "push_many", real)
    with running(redis_url, 1, queues="cut-a"):
        wait_until(lambda: callbacks(redis_url, "finally", e.batch_id), timeout=15)
    assert len(callbacks(redis_url, "then", e.batch_id)) == 1
    assert e.batch.progress().finished


def test_a_batch_dispatch_with_the_server_gone_names_the_batch(
        queue: RedisQueue, redis_db: RedisHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    real = RedisQueue.push_many

    def push_many(self: RedisQueue, name: str, jobs: list) -> None:
        if name == "gone-b":
            redis_db.stop()  # a real outage between the two queues' chunks
        real(self, name, jobs)

    monkeypatch.setattr(RedisQueue, "push_many", push_many)
    items = [bjob.s(1).on("gone-a"), bjob.s(2).on("gone-b")]
    try:
        with pytest.raises(BulkDispatchError) as caught:
            batch(items).dispatch()
    finally:
        redis_db.start()
    e = caught.value
    assert e.batch_id and e.batch.id == e.batch_id and len(e.landed) == 1
    assert len(e.not_landed) == 1 and e.uncounted == 0, "Redis gone: nothing uncounted"
    p = e.batch.progress()
    assert p is not None and p.total == 2, "unknown jobs stay counted"


def test_an_empty_batch_finishes_at_once_and_runs_then_and_finally_once(
        redis_url: str, queue: RedisQueue) -> None:
    b = batch([], then=then_cb.s(), finally_=finally_cb.s()).dispatch()
    p = b.progress()
    assert p is not None and p.finished and (p.total, p.pending, p.percent) == (0, 0, 100)
    assert queue.counts("default")["ready"] == 2, "then and finally queued"
    with running(redis_url, 1):
        wait_until(lambda: callbacks(redis_url, "finally", b.id)
                   and callbacks(redis_url, "then", b.id), timeout=15)
    assert len(callbacks(redis_url, "then", b.id)) == 1


def test_a_chunked_held_batch_lands_whole(queue: RedisQueue) -> None:
    b = batch([bjob.s(n).on("held") for n in range(2500)]).dispatch()
    assert queue.counts("held")["ready"] == 2500 and b.progress().total == 2500
    assert len(queue.client.lrange(QueueKeys("held").ready, 0, -1)) == 2500
