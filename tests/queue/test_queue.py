"""RedisQueue against the real server: atomic reserve, deadlines, delays, priority, failed store."""

from __future__ import annotations

import json
import time

import pytest

from supervisor_q.jobs.registry import Registry, dispatch, job
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.keys import QueueKeys
from tests.helpers import wait_until


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def push(queue: RedisQueue, name: str = "tests.noop", q: str = "default", delay: float = 0,
         timeout: float | None = None, args: list | None = None) -> str:
    built = payloads.build(name, q, args or [], {}, timeout=timeout)
    queue.push(q, built.id, payloads.encode(built), delay=delay)
    return built.id


def test_push_then_reserve_counts_the_attempt(queue: RedisQueue) -> None:
    job_id = push(queue)
    _, result = queue.reserve("default", default_timeout=60)
    [reserved] = result.jobs
    assert reserved.id == job_id
    assert reserved.attempts == 1
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 1, "failed": 0}


def test_ack_deletes_everything_of_the_job(queue: RedisQueue) -> None:
    job_id = push(queue)
    queue.reserve("default", default_timeout=60)
    assert queue.ack("default", job_id)
    k = QueueKeys("default")
    for key in (k.payloads, k.attempts, k.enqueued):
        assert not queue.client.hexists(key, job_id)
    assert not queue.ack("default", job_id), "a second ack must be a no-op"


def test_ack_rides_with_next_reserve(queue: RedisQueue) -> None:
    first, second = push(queue), push(queue)
    queue.reserve("default", default_timeout=60)
    acked, result = queue.reserve("default", default_timeout=60, ack_ids=[first])
    assert acked == 1
    assert [j.id for j in result.jobs] == [second]
    assert queue.counts("default")["reserved"] == 1


def test_reservation_deadline_comes_from_the_jobs_own_timeout(queue: RedisQueue) -> None:
    short = push(queue, timeout=2)
    long = push(queue, timeout=600)
    queue.reserve("default", default_timeout=60, count=2)
    k = QueueKeys("default")
    seconds, micros = queue.client.time()
    server_now_ms = seconds * 1000 + micros // 1000
    short_deadline = queue.client.zscore(k.reserved, short) - server_now_ms
    long_deadline = queue.client.zscore(k.reserved, long) - server_now_ms
    margin = queue.margin_ms
    assert 2000 + margin - 1500 <= short_deadline <= 2000 + margin + 500
    assert 600_000 + margin - 1500 <= long_deadline <= 600_000 + margin + 500


def test_expired_reservation_goes_back_to_the_queue(redis_url: str) -> None:
    queue = RedisQueue(connect(redis_url), margin=0.05)
    job_id = push(queue, timeout=0.1)
    _, first = queue.reserve("default", default_timeout=60)
    assert first.jobs[0].attempts == 1

    def reserved_again():
        _, result = queue.reserve("default", default_timeout=60)
        return result.jobs

    [again] = wait_until(reserved_again, timeout=5)
    assert again.id == job_id
    assert again.attempts == 2, "the lost attempt is counted"


def test_delayed_job_is_invisible_until_due(queue: RedisQueue) -> None:
    job_id = push(queue, delay=0.4)
    _, result = queue.reserve("default", default_timeout=60)
    assert result.jobs == []
    assert result.next_delayed_in is not None and 0 < result.next_delayed_in <= 0.4
    start = time.monotonic()

    def reserve():
        return queue.reserve("default", default_timeout=60)[1].jobs

    [due] = wait_until(reserve, timeout=5, interval=0.01)
    assert due.id == job_id
    assert time.monotonic() - start >= 0.25


def test_release_with_delay_and_exception_count(queue: RedisQueue) -> None:
    job_id = push(queue)
    queue.reserve("default", default_timeout=60)
    assert queue.release("default", job_id, delay=60, count_exception=True)
    assert queue.counts("default") == {"ready": 0, "delayed": 1, "reserved": 0, "failed": 0}
    assert not queue.release("default", job_id), "releasing an unreserved job does nothing"
    assert int(queue.client.hget(QueueKeys("default").exceptions, job_id)) == 1


def test_fail_and_retry_from_the_failed_store(queue: RedisQueue) -> None:
    job_id = push(queue)
    [reserved] = queue.reserve("default", default_timeout=60)[1].jobs
    record = {"id": job_id, "queue": "default", "reason": "x", "payload": reserved.payload}
    assert queue.fail("default", job_id, record)
    [stored] = queue.failed_records()
    assert stored["reason"] == "x"
    assert queue.retry_failed(stored)
    assert not queue.retry_failed(stored), "a second retry of the same record does nothing"
    [again] = queue.reserve("default", default_timeout=60)[1].jobs
    assert again.id == job_id and again.attempts == 1, "retry resets attempts"


def test_size_clear_and_wait_time(queue: RedisQueue) -> None:
    for _ in range(3):
        push(queue)
    assert queue.size("default") == 3
    assert queue.load("default")[0] == 3
    assert queue.clear("default") == 3
    assert queue.size("default") == 0
    assert queue.load("default") == (0, 0.0)


def server_now(queue: RedisQueue) -> float:
    seconds, micros = queue.client.time()
    return seconds + micros / 1e6


def test_load_reports_how_long_the_oldest_ready_job_has_waited(queue: RedisQueue) -> None:
    """The oldest-wait script behind autoscale `by: wait` and `monitor --max-wait`: the
    wait of the job at the head, by the server's clock, bracketed by TIME calls."""
    before_first = server_now(queue)
    first = push(queue)
    after_first = server_now(queue)
    time.sleep(0.3)  # not a wait for anything: the time the first job is to have waited
    before_second = server_now(queue)
    push(queue)
    after_second = server_now(queue)
    time.sleep(0.3)

    def bracketed(since_low: float, since_high: float) -> None:
        low = server_now(queue)
        length, waited = queue.load("default")
        high = server_now(queue)
        ms = 0.001  # the script counts whole milliseconds
        assert low - since_high - ms <= waited <= high - since_low + ms, (waited, length)

    assert queue.load("default")[0] == 2
    bracketed(before_first, after_first)  # the head, not the newest job
    [reserved] = queue.reserve("default", default_timeout=60)[1].jobs
    assert reserved.id == first
    assert queue.load("default")[0] == 1
    bracketed(before_second, after_second)  # a reserved job no longer waits


def test_every_key_of_a_queue_shares_one_hash_tag(queue: RedisQueue) -> None:
    job_id = push(queue, q="emails")
    queue.reserve("emails", default_timeout=60)
    queue.release("emails", job_id, delay=10)
    keys = [k.decode() for k in queue.client.keys("sq:*") if b"queues" not in k]
    assert keys, "the queue wrote keys"
    assert all("{emails}" in key for key in keys), keys


def test_wait_and_reserve_wakes_on_push_and_reserves(queue: RedisQueue, redis_url: str) -> None:
    other = RedisQueue(connect(redis_url))
    # On a server that has not seen this script yet, the first call loads it, returns None.
    idle = (queue.wait_and_reserve(["default"], 0.05, default_timeout=60)
            or queue.wait_and_reserve(["default"], 0.05, default_timeout=60))
    assert idle is not None and idle.jobs == []
    job_id = push(other)
    woken = queue.wait_and_reserve(["default"], 2.0, default_timeout=60)
    assert [j.id for j in woken.jobs] == [job_id]
    assert woken.jobs[0].attempts == 1


def test_dispatch_refuses_arguments_json_cannot_carry(redis_url: str) -> None:
    registry = Registry()

    @job(name="t.obj", registry=registry)
    def obj(x: object) -> None: ...

    with pytest.raises(payloads.NotSerialisable, match="JSON-serialisable"):
        obj.dispatch(object())
    with pytest.raises(payloads.NotSerialisable):
        dispatch("t.any", float("nan"), registry=registry)


def test_dispatch_by_name_and_by_job_write_json_payloads(redis_url: str) -> None:
    registry = Registry()

    @job(name="t.welcome", queue="emails", tries=3, timeout=30, backoff=[2, 10],
         registry=registry)
    def welcome(user_id: int) -> None: ...

    job_id = welcome.dispatch(42)
    other_id = dispatch("myapp.jobs:other", 1, 2, queue="emails-high", key="v")
    queue = RedisQueue(connect(redis_url))
    raw = queue.client.hget(QueueKeys("emails").payloads, job_id)
    body = json.loads(raw)
    assert raw.startswith(b'{"v":2,"timeout":30')
    assert body["job"] == "t.welcome" and body["args"] == [42] and body["tries"] == 3
    assert body["backoff"] == [2, 10] and body["queue"] == "emails"
    assert "id" in body and "dispatched_at" in body
    for field in ("kwargs", "attempts", "retry_until", "max_exceptions", "fail_on_timeout"):
        assert field not in body  # defaults are left out (compact payload)
    other = json.loads(queue.client.hget(QueueKeys("emails-high").payloads, other_id))
    assert other["args"] == [1, 2] and other["kwargs"] == {"key": "v"}


def test_ack_without_waiting_survives_a_script_flush(queue: RedisQueue) -> None:
    first, second = push(queue), push(queue)
    queue.reserve("default", default_timeout=60, count=2)
    queue.client.script_flush()  # as after a server restart: the ack's script is gone
    queue.ack_nowait("default", first)
    _, result = queue.reserve("default", default_timeout=60)
    assert result.jobs == []
    assert queue.counts("default")["reserved"] == 1, "the ack was redone, not lost"
    assert queue.ack("default", second) == 1


def test_a_queue_over_a_pipeline_queues_its_pushes_until_execute(queue: RedisQueue) -> None:
    """RedisQueue(pipeline).push is part of the pipeline (a fast fill, as bench/limit.py
    does), not sent at once over a kept connection; on a fresh server too (NOSCRIPT)."""
    queue.client.script_flush()
    pipe = queue.client.pipeline(transaction=False)
    piped = RedisQueue(pipe)
    ids = []
    for _ in range(3):
        built = payloads.build("tests.noop", "piped", [], {})
        piped.push("piped", built.id, payloads.encode(built))
        ids.append(built.id)
    assert queue.client.llen(QueueKeys("piped").ready) == 0  # nothing sent yet
    pipe.execute()
    ready = [x.decode() for x in queue.client.lrange(QueueKeys("piped").ready, 0, -1)]
    assert ready == ids
