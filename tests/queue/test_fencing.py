"""Reservation tokens: a stale holder's ack, release and fail change nothing; a dead
master's unreported reservations are handed back without spending an attempt; callers
that pass no token (older code, the master's hand-back by attempt) still work."""

from __future__ import annotations

import collections
import logging
import subprocess
import sys
import threading

import pytest
import redis

from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.fencing import MASTER_ID_ENV
from supervisor_q.queue.keys import QueueKeys
from tests.helpers import wait_until


def worker_of(redis_url: str, master: str, monkeypatch: pytest.MonkeyPatch) -> RedisQueue:
    """A queue object whose reservations are held in master's name."""
    monkeypatch.setenv(MASTER_ID_ENV, master)
    queue = RedisQueue(connect(redis_url))
    queue.holder()  # the holder is named now, from the environment as it is now
    return queue


def push(queue: RedisQueue, q: str = "fq") -> str:  # a tests.noop job
    built = payloads.build("tests.noop", q, [], {})
    queue.push(q, built.id, payloads.encode(built))
    return built.id


def test_a_stale_holder_can_neither_ack_release_fail_nor_extend_the_job_it_lost(
        redis_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    stale = worker_of(redis_url, "hostA:1:aaaa", monkeypatch)
    fresh = worker_of(redis_url, "hostB:2:bbbb", monkeypatch)
    job_id = push(stale)
    [first] = stale.reserve("fq", default_timeout=60)[1].jobs
    assert stale.hand_back_held("hostA:1:aaaa|") == 1  # hostA was declared dead
    [again] = fresh.reserve("fq", default_timeout=60)[1].jobs
    assert again.id == job_id and again.attempts == first.attempts == 1  # attempt given back

    with caplog.at_level(logging.WARNING, logger="supervisor_q.queue"):
        assert stale.ack("fq", job_id) == 0
    assert "stale ack ignored on queue fq" in caplog.text and job_id in caplog.text
    assert not stale.release("fq", job_id, 0)
    assert not stale.fail("fq", job_id, {"reason": "x"})
    # Same attempt number (the hand-back gave it back), another reservation: no extend.
    before = stale.client.zscore(QueueKeys("fq").reserved, job_id)
    assert not stale.extend("fq", job_id, 3600, first.attempts)
    assert stale.client.zscore(QueueKeys("fq").reserved, job_id) == before
    assert fresh.extend("fq", job_id, 3600, again.attempts)
    stale.reserve("fq", default_timeout=60, ack_ids=[job_id])  # the ack riding a reserve
    assert stale.counts("fq") == {"ready": 0, "delayed": 0, "reserved": 1, "failed": 0}

    assert fresh.ack("fq", job_id) == 1  # the holder's own ack still works
    assert fresh.counts("fq")["reserved"] == 0
    assert not fresh.client.exists(QueueKeys("fq").holders)


def test_a_stale_ack_sent_without_waiting_is_ignored_and_logged(
        redis_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    stale = worker_of(redis_url, "hostA:1:aaaa", monkeypatch)
    fresh = worker_of(redis_url, "hostB:2:bbbb", monkeypatch)
    job_id = push(stale)
    stale.reserve("fq", default_timeout=60)
    stale.hand_back_held("hostA:1:aaaa|")
    fresh.reserve("fq", default_timeout=60)
    with caplog.at_level(logging.WARNING, logger="supervisor_q.queue"):
        stale.ack_nowait("fq", job_id)
        stale.reserve("fq", default_timeout=60)  # reads the owed reply first
    assert "stale ack ignored on queue fq" in caplog.text
    assert fresh.counts("fq")["reserved"] == 1


def test_hand_back_held_takes_only_the_dead_masters_jobs(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = worker_of(redis_url, "host:7:dead", monkeypatch)
    alive = worker_of(redis_url, "host:7:deadbeef", monkeypatch)  # a longer id, same start
    alone = worker_of(redis_url, "", monkeypatch)  # a standalone `work`
    ids = [push(dead) for _ in range(4)]
    dead.reserve("fq", default_timeout=60, count=2)  # one running, one prefetched
    alive.reserve("fq", default_timeout=60)
    alone.reserve("fq", default_timeout=60)
    assert dead.hand_back_held("host:7:dead|") == 2
    counts = dead.counts("fq")
    assert counts["ready"] == 2 and counts["reserved"] == 2
    attempts = dead.client.hmget(QueueKeys("fq").attempts, ids[:2])
    assert attempts == [b"0", b"0"]  # the dead master's attempts given back
    assert dead.hand_back_held("host:7:dead|") == 0  # once


def test_callers_without_a_token_still_ack_release_and_fail(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rolling deploy: a job reserved by one process and settled by another that holds
    no token (an older worker's ack, the master's hand-back by attempt) still works."""
    worker = worker_of(redis_url, "m:1:x", monkeypatch)
    other = RedisQueue(connect(redis_url))
    a, b, c = push(worker), push(worker), push(worker)
    worker.reserve("fq", default_timeout=60, count=3)
    assert other.ack("fq", a) == 1
    assert other.release("fq", b, 0, expected_attempts=1, undo_attempt=True)
    assert other.fail("fq", c, {"reason": "gone"})
    assert other.counts("fq") == {"ready": 1, "delayed": 0, "reserved": 0, "failed": 1}


def test_fenced_hot_path_stays_one_round_trip_per_job(redis_url: str) -> None:
    """A worker drains pre-queued jobs with one EVALSHA per job (the ack, token included,
    rides the next reserve) and hardly any other command, as MONITOR sees them."""
    count = 400
    queue = RedisQueue(connect(redis_url))
    payloads_key = QueueKeys("hot").payloads
    for _ in range(count):
        push(queue, "hot")
    seen: list[str] = []
    monitor_client = redis.Redis.from_url(redis_url)
    with monitor_client.monitor() as monitor:
        def listen() -> None:
            try:
                for event in monitor.listen():
                    if event.get("client_type") != "lua":
                        seen.append(event["command"].split(" ", 1)[0].upper())
            except redis.ConnectionError:
                pass  # the monitor connection closed at the end of the test
        threading.Thread(target=listen, daemon=True).start()
        worker = subprocess.Popen(
            [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work", "--quiet",
             "--queue", "hot", "--import", "tests.jobmods.basic", "--sleep", "0.2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: queue.client.hlen(payloads_key) == 0, timeout=20,
                       interval=0.05, message="drained")
        finally:
            worker.terminate()
            worker.wait(10)
    commands = collections.Counter(c for c in seen if c != "HLEN")  # HLEN: our polling
    assert count <= commands["EVALSHA"] <= count * 1.02 + 10, commands
    others = sum(commands.values()) - commands["EVALSHA"]
    assert others <= 40, commands  # start-up and shutdown only, none per job


def test_a_refused_hand_back_leaves_the_holders_token_alone(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A master's hand-back of an older attempt is refused, and the worker that holds
    the job now can still ack it."""
    worker = worker_of(redis_url, "m:1:x", monkeypatch)
    master = RedisQueue(connect(redis_url))
    job_id = push(worker)
    worker.reserve("fq", default_timeout=60)
    assert not master.release("fq", job_id, 0, expected_attempts=7, undo_attempt=True)
    assert worker.ack("fq", job_id) == 1


def test_a_landed_ack_forgets_its_token_and_a_stale_one_keeps_it(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """stale_acks forgets the tokens of acks that landed, whether they rode with a reserve,
    went alone or were sent without waiting (so the tokens do not grow job by job), and
    keeps a stale ack's token: a later release or fail of that job is fenced too."""
    queue = worker_of(redis_url, "hostC:3:cccc", monkeypatch)
    first, second, third = push(queue), push(queue), push(queue)
    _, reserved = queue.reserve("fq", default_timeout=60)
    assert [j.id for j in reserved.jobs] == [first] and queue.token("fq", first)
    _, reserved = queue.reserve("fq", default_timeout=60, ack_ids=[first])
    assert queue.token("fq", first) == "" and queue.token("fq", second)
    queue.ack("fq", second)
    assert queue.token("fq", second) == ""
    queue.reserve("fq", default_timeout=60)
    queue.ack_nowait("fq", third)
    queue.reserve("fq", default_timeout=60)  # reads the owed reply first
    assert queue.token("fq", third) == ""
    lost = push(queue)
    queue.reserve("fq", default_timeout=60)
    token = queue.token("fq", lost)
    queue.hand_back_held("hostC:3:cccc|")  # its reservation is no longer ours
    assert queue.ack("fq", lost) == 0
    assert queue.token("fq", lost) == token
