"""dispatch_many and batch dispatch in chunks (jobs/bulk.py, queue/bulk.py), and the
single dispatch's kept connection, against the real server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from supervisor_q.jobs import dispatching
from supervisor_q.jobs.bulk import BulkDispatchError
from supervisor_q.jobs.registry import Registry, dispatch_many, job
from supervisor_q.queue import lua
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.keys import QueueKeys
from supervisor_q.testing import fake_queue
from supervisor_q.workflows.batches import batch
from tests.conftest import RedisHandle

REG = Registry()


@job(name="tests.bulk.add", queue="bulkq", registry=REG)
def add(a: int, b: int = 0) -> int:
    return a + b


@job(name="tests.bulk.unique", queue="bulkq", registry=REG, unique_for=60,
     unique_id=lambda key: key)
def unique_job(key: str) -> None:
    pass


@job(name="tests.bulk.secret", queue="bulkq", registry=REG, encrypted=True)
def secret(value: str) -> None:
    pass


@pytest.fixture
def queue(redis_url: str) -> Iterator[RedisQueue]:
    dispatching._queues.clear()
    yield dispatching.queue_for(redis_url)
    dispatching._queues.clear()


def chunks(queue: RedisQueue, name: str) -> int:
    """How many PUSH_MANY calls queued jobs of name (each leaves one marker key)."""
    return len(queue.client.keys(QueueKeys(name).chunk_marker("*")))


def ready(queue: RedisQueue, name: str) -> list[str]:
    return [i.decode() for i in queue.client.lrange(QueueKeys(name).ready, 0, -1)]


def test_dispatch_many_queues_in_order_one_script_call_per_chunk(queue: RedisQueue) -> None:
    ids = add.dispatch_many([(n, 1) for n in range(9)] + [{"a": 9, "b": 2}], chunk=3)
    assert len(ids) == len(set(ids)) == 10 and ready(queue, "bulkq") == ids
    assert chunks(queue, "bulkq") == 4  # 3 + 3 + 3 + 1
    last = payloads.decode(queue.client.hget(QueueKeys("bulkq").payloads, ids[-1]))
    assert last.job == "tests.bulk.add" and last.kwargs == {"a": 9, "b": 2}
    assert payloads.decode(queue.client.hget(QueueKeys("bulkq").payloads, ids[4])).args == [4, 1]
    assert queue.counts("bulkq")["ready"] == 10  # one wake-up token per job too
    assert queue.client.llen(QueueKeys("bulkq").notify) == 10


def test_delay_and_queue_apply_to_every_job(queue: RedisQueue) -> None:
    ids = add.dispatch_many([(1,), (2,)], delay=60, queue="later")
    assert queue.client.zrange(QueueKeys("later").delayed, 0, -1) == sorted(
        i.encode() for i in ids)
    assert ready(queue, "later") == [] and "later" in queue.known_queues()


def test_by_name_without_registration_and_bad_items(queue: RedisQueue) -> None:
    ids = dispatch_many("nowhere.job", [(1,), [2]], queue="byname")
    assert ready(queue, "byname") == ids
    with pytest.raises(TypeError, match="tuples or lists of arguments or dicts"):
        add.dispatch_many([(1,), 5])
    assert queue.counts("bulkq")["ready"] == 1, "items before the bad one are queued"


def test_a_bad_item_mid_stream_says_which_jobs_before_it_were_queued(
        queue: RedisQueue) -> None:
    """Items before a bad one are queued, earlier chunks and the held part alike: the
    error carries their ids (landed, in order) and how many items were taken."""
    items = [(n,) for n in range(5)] + [(object(),)] + [(9,)]
    with pytest.raises(payloads.NotSerialisable) as raised:
        add.dispatch_many(items, chunk=2)
    assert raised.value.landed == ready(queue, "bulkq")
    assert len(raised.value.landed) == 5 and raised.value.taken == 6, "the bad one too"
    assert [payloads.decode(queue.client.hget(QueueKeys("bulkq").payloads, i)).args
            for i in raised.value.landed] == [[n] for n in range(5)]


def test_unique_jobs_take_the_per_job_path_and_drop_duplicates(queue: RedisQueue) -> None:
    ids = unique_job.dispatch_many([("k1",), ("k2",), ("k1",)])
    assert ids[0] and ids[1] and ids[2] is None
    assert ready(queue, "bulkq") == ids[:2] and chunks(queue, "bulkq") == 0


def test_encrypted_jobs_are_sealed_per_job(queue: RedisQueue, monkeypatch) -> None:
    from supervisor_q.jobs.encryption import generate_key

    monkeypatch.setenv("SUPERVISOR_Q_ENCRYPTION_KEY", generate_key())
    [job_id] = secret.dispatch_many([("top secret",)])
    stored = queue.client.hget(QueueKeys("bulkq").payloads, job_id)
    assert b"top secret" not in stored and job_id.encode() in stored


def test_the_fake_records_each_job() -> None:
    with fake_queue() as fake:
        add.dispatch_many([(1,), (2,), (3,)])
    fake.assert_dispatched_times(add, 3)


def test_a_resent_chunk_is_a_no_op(queue: RedisQueue) -> None:
    k = QueueKeys("bulkq")
    keys = [k.ready, k.notify, k.delayed, k.payloads, k.enqueued, k.chunk_marker("t1")]
    args = [600, "j1", "{}", 0, "j2", "{}", 0]
    push_many = queue.client.register_script(lua.PUSH_MANY)
    assert push_many(keys=keys, args=args) == 2
    assert push_many(keys=keys, args=args) == 0, "the marker makes a resend a no-op"
    assert ready(queue, "bulkq") == ["j1", "j2"]


def test_a_server_lost_mid_dispatch_says_which_jobs_landed(
        queue: RedisQueue, redis_db: RedisHandle) -> None:
    def items() -> Iterator[tuple[int]]:
        for n in range(9):
            if n == 4:
                redis_db.stop()  # chunk 1 (0-2) is queued; chunk 2 (3-5) cannot be
            yield (n,)

    try:
        with pytest.raises(BulkDispatchError) as caught:
            add.dispatch_many(items(), chunk=3)
    finally:
        redis_db.start()
    error = caught.value
    assert error.taken == 6 and len(error.landed) == 3 and error.not_landed == []
    assert len(error.unknown) == 3, "Redis was gone: the chunk's fate could not be asked"
    assert ready(queue, "bulkq") == error.landed  # the aof kept what landed, nothing more


def test_batch_dispatch_pushes_in_chunks(queue: RedisQueue) -> None:
    handle = batch([add.s(n) for n in range(2500)] + [[add.s(1), add.s(2)]],
                   queue="bq").dispatch()
    assert queue.counts("bq")["ready"] == 2501 and chunks(queue, "bq") == 3
    assert handle.progress().total == 2502


def test_single_dispatch_keeps_one_connection_per_thread(redis_url: str) -> None:
    queue = RedisQueue(connect(redis_url))
    queue.index_queue("kept")  # a pool command; every push below is kept
    # Loaded now (a pool command on the same connection): three threads meeting a fresh
    # server's NOSCRIPT at once would each load it through the pool.
    queue.client.script_load(lua.PUSH)
    kept: list[object] = []

    def push_some() -> None:
        for n in range(20):
            queue.push("kept", f"{threading.get_ident()}-{n}", "{}")
        kept.append(queue._kept().conn)

    threads = [threading.Thread(target=push_some) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert queue.size("kept") == 60
    assert len({id(conn) for conn in kept if conn is not None}) == 3, "one per thread"
    assert len(queue.client.connection_pool._available_connections) == 1, "pool: index, size"
