"""A batch job's count rides in the round trip of its ack (queue/batchack.py): it is
counted exactly once, and its callbacks dispatched exactly once, when that round trip's
reply is lost and the worker sends it again, and when the worker is SIGKILLed after the
job and before its ack (another worker runs the job again). Real worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import redis

from supervisor_q.queue import lua_limits
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.keys import batch_keys
from supervisor_q.workflows.batches import Batch, batch
from tests.conftest import RedisHandle
from tests.helpers import gone, wait_until
from tests.jobmods.flows import bjob, finally_cb, progress_cb, then_cb
from tests.worker.test_lost_reply import MARKER, ReplyDropper
from tests.workers import FLOWS, results, running


def callbacks(redis_url: str, kind: str, batch_id: str) -> list[dict]:
    return [r for r in results(redis_url, kind) if r["info"]["id"] == batch_id]


def counted_once(redis_url: str, b: Batch) -> None:
    """then, finally and progress dispatched once each; the job counted once."""
    assert len(callbacks(redis_url, "then", b.id)) == 1, "then exactly once"
    assert len(callbacks(redis_url, "finally", b.id)) == 1, "finally exactly once"
    assert len(callbacks(redis_url, "progress", b.id)) == 1, "progress exactly once"
    p = b.progress()
    assert p is not None and (p.total, p.pending, p.processed, p.failed) == (1, 0, 1, 0)
    assert redis.Redis.from_url(redis_url).scard(batch_keys(b.id)[1]) == 1


def make_batch(seconds: float) -> Batch:
    return batch([bjob.s(1, seconds)], then=then_cb.s(), finally_=finally_cb.s(),
                 progress=progress_cb.s()).dispatch()


def test_a_lost_reply_of_the_ack_round_trip_counts_once_and_fires_once(
        redis_db: RedisHandle, redis_url: str) -> None:
    proxy = ReplyDropper(str(redis_db.server.unix_socket))
    proxied = f"redis://127.0.0.1:{proxy.port}/{redis_db.db}"
    queue = RedisQueue(connect(redis_url))
    # Loaded, as after a worker's first batch job: otherwise the count of the cut round
    # trip finds no script and is simply redone, and no replay would be tested.
    queue.client.script_load(lua_limits.BATCH_SUCCEEDED)
    worker = subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", proxied, "work",
         "--import", FLOWS, "--sleep", "0.2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        b = make_batch(1.0)
        wait_until(lambda: queue.counts("default")["reserved"] == 1, timeout=15,
                   message="the batch job to start")
        # While it runs (1 s): the next reserve, which carries its ack and its batch
        # count, will reserve this job, and its reply is cut on the way back.
        proxy.armed.set()
        built = payloads.build("flows.step", "default", ["marker"], {})
        queue.push("default", MARKER.decode(), payloads.encode(built))
        wait_until(proxy.dropped.is_set, timeout=15, message="the ack's reply to be cut")
        wait_until(lambda: callbacks(redis_url, "finally", b.id)
                   and callbacks(redis_url, "then", b.id), timeout=15,
                   message="then and finally after the retried round trip")
        wait_until(lambda: results(redis_url, "step"), timeout=15, message="the marker job")
        wait_until(lambda: queue.counts("default") == {**queue.counts("default"),
                                                        "ready": 0, "reserved": 0},
                   timeout=15)
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=15)
        proxy.close()
        queue.close()
    assert "Redis unavailable" in err, "the round trip really was lost and retried"
    assert "sent again after a lost reply found it gone: the first one landed" in err, err
    assert "stale ack ignored" not in err, "not a stale ack: its own first send landed"
    assert len(results(redis_url, "bjob")) == 1, "the job ran once: its ack did land"
    counted_once(redis_url, b)


@pytest.mark.slow
def test_a_worker_killed_between_job_and_ack_is_counted_once(redis_url: str) -> None:
    b = make_batch(0.0)
    # --rest holds the worker after the job, its ack (and batch count) not yet sent. The
    # SIGKILL: `work`'s guard hands the job back at once and its new worker reruns it.
    with running(redis_url, 1, "--rest", "60", "--timeout", "1", "--tries", "3"):
        wait_until(lambda: results(redis_url, "bjob"), timeout=15, message="the job")
        [ran] = results(redis_url, "bjob")
        p = b.progress()
        assert p is not None and p.pending == 1, "the count waits for the ack"
        os.kill(ran["pid"], signal.SIGKILL)
        wait_until(lambda: gone(ran["pid"]), timeout=10, message="the worker to die")
    with running(redis_url, 1, "--tries", "3"):  # the rerun is the job's second attempt
        wait_until(lambda: callbacks(redis_url, "finally", b.id), timeout=20,
                   message="the rerun to count the job")
        wait_until(lambda: callbacks(redis_url, "progress", b.id), timeout=10)
    assert [r["pid"] != ran["pid"] for r in results(redis_url, "bjob")] == [False, True], \
        ("the job ran twice: once in the killed worker, once on the guard's new worker",
         results(redis_url, "bjob"))
    counted_once(redis_url, b)
    assert json.loads(json.dumps(b.progress().to_json()))["finished"]  # type: ignore[union-attr]


def test_redis_restarts_mid_batch_lose_no_progress_callback(redis_db: RedisHandle,
                                                             redis_url: str) -> None:
    """Redis stopped and started twice while a worker drains a batch with a progress
    callback: every job's callback is dispatched (at least once), then and finally once,
    and no "batch callbacks failed" traceback (each restart lost one callback)."""
    jobs = 300
    b = batch([bjob.s(i) for i in range(jobs)], then=then_cb.s(), finally_=finally_cb.s(),
              progress=progress_cb.s()).dispatch()
    with running(redis_url, 1) as [worker]:
        for _ in range(2):
            done = len(results(redis_url, "bjob"))
            wait_until(lambda d=done: len(results(redis_url, "bjob")) > d + 20, timeout=30)
            redis_db.stop()
            redis_db.start()
        wait_until(lambda: callbacks(redis_url, "finally", b.id), timeout=60,
                   message="the batch to finish")
        wait_until(lambda: len(callbacks(redis_url, "progress", b.id)) >= jobs, timeout=30,
                   message=f"{jobs} progress callbacks")
    err = worker.stderr.read() if worker.stderr else ""
    assert "batch callbacks failed" not in err, err[-3000:]
    assert len(callbacks(redis_url, "then", b.id)) == 1
    assert len(callbacks(redis_url, "finally", b.id)) == 1
