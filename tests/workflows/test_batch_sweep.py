"""A batch's then and finally are not lost with the worker that won them
(workflows/callbacks.py): the winner claims each and marks it done; a sweep dispatches
those won a grace ago and not done, once; a winner that comes back after a sweep took
its callback dispatches nothing. And for real: a worker SIGKILLed while the reply that
won them was unread (its next job, short on average, ran long), with real processes."""

from __future__ import annotations

import logging
import os
import signal

import psutil
import pytest
import redis

from supervisor_q.queue import lua_limits
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.keys import BATCH_OPEN_KEY, QueueKeys, batch_keys
from supervisor_q.workflows import batches, callbacks
from supervisor_q.workflows.batches import Batch, batch
from tests.helpers import gone, ready_ids, wait_until
from tests.jobmods.flows import bjob, finally_cb, then_cb
from tests.workers import results, running


def _won_unsent(queue: RedisQueue, b: Batch, jobs: int, ago_ms: int) -> None:
    """Count every job of b as a worker would, the callbacks won but not dispatched (its
    winner killed), the win ago_ms ago."""
    script = queue.script(lua_limits.BATCH_SUCCEEDED)
    for i in range(jobs):
        script(keys=batch_keys(b.id), args=[f"job-{i}", "", ""])
    seconds, micros = queue.client.time()
    at = seconds * 1000 + micros // 1000 - ago_ms
    queue.client.hset(batch_keys(b.id)[0], mapping={"then_at": at, "finished_at": at})


def _queued(redis_url: str) -> list[str]:
    """The names of the jobs waiting in the default queue."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    names = [client.hget(QueueKeys("default").payloads, i) for i in ready_ids(redis_url)]
    return sorted(n.split('"job":"')[1].split('"')[0] for n in names if n)


def test_a_sweep_dispatches_won_callbacks_once_and_the_late_winner_none(
        redis_url: str) -> None:
    queue = RedisQueue(connect(redis_url))
    b = batch([bjob.s(i) for i in range(3)], then=then_cb.s(), finally_=finally_cb.s()
              ).dispatch(connection=redis_url)
    queue.client.delete(QueueKeys("default").ready)  # the jobs themselves: counted by hand
    _won_unsent(queue, b, 3, ago_ms=1000)
    batches.sweep(queue)
    assert _queued(redis_url) == [], "won 1 s ago: its winner may still dispatch them"
    _won_unsent(queue, b, 0, ago_ms=callbacks.GRACE_MS + 1000)
    batches.sweep(queue)
    assert _queued(redis_url) == ["flows.finally", "flows.then"]
    batches.sweep(queue)
    callbacks.fire(Batch(b.id, queue), {"then": 1, "finally": 1}, None)  # the late winner
    assert _queued(redis_url) == ["flows.finally", "flows.then"], "each once"
    batches.sweep(queue)  # both done: the batch leaves the open index
    assert queue.client.zscore(BATCH_OPEN_KEY, b.id) is None


def test_a_winner_that_dispatches_leaves_nothing_to_sweep(redis_url: str) -> None:
    queue = RedisQueue(connect(redis_url))
    b = batch([bjob.s(1)], then=then_cb.s(), finally_=finally_cb.s()).dispatch(
        connection=redis_url)
    assert queue.client.zscore(BATCH_OPEN_KEY, b.id) is not None
    queue.client.delete(QueueKeys("default").ready)
    _won_unsent(queue, b, 1, ago_ms=callbacks.GRACE_MS + 1000)
    callbacks.fire(Batch(b.id, queue), {"then": 1, "finally": 1}, None)
    callbacks.fire(Batch(b.id, queue), {"then": 1, "finally": 1}, None)  # a replayed reply
    batches.sweep(queue)
    assert _queued(redis_url) == ["flows.finally", "flows.then"]
    assert queue.client.zscore(BATCH_OPEN_KEY, b.id) is None


def test_then_and_finally_survive_a_sigkill_while_their_reply_is_unread(
        redis_url: str) -> None:
    """The trial's case: 30 fast jobs of a batch, then a job of the same name (short on
    average) that runs 8 s: the count of the batch's last job, which won then and
    finally, rides with the reserve sent ahead, its reply read when the long job ends.
    A SIGKILL during that job lost both for good; now a sweep dispatches them."""
    jobs = 30
    b = batch([bjob.s(i) for i in range(jobs)], then=then_cb.s(), finally_=finally_cb.s()
              ).dispatch(connection=redis_url)
    bjob.dispatch(999, 8.0, connection=redis_url)
    client = redis.Redis.from_url(redis_url)
    with running(redis_url, 1, "--tries", "3") as [guard]:
        wait_until(lambda: len(results(redis_url, "bjob")) == jobs, timeout=30,
                   message="the batch's jobs")
        wait_until(lambda: client.hget(batch_keys(b.id)[0], "finished_at"), timeout=10,
                   message="the last count")
        assert client.hget(batch_keys(b.id)[0], "sent:then") is None, "not dispatched yet"
        assert not results(redis_url, "then")
        [child] = psutil.Process(guard.pid).children()
        os.kill(child.pid, signal.SIGKILL)
        wait_until(lambda: gone(child.pid), timeout=10, message="the worker to die")
        wait_until(lambda: results(redis_url, "then") and results(redis_url, "finally"),
                   timeout=45, message="then and finally, dispatched by a sweep")
        wait_until(lambda: any(r["value"] == 999 for r in results(redis_url, "bjob")),
                   timeout=30, message="the long job, run again")
    assert len(results(redis_url, "then")) == 1 and len(results(redis_url, "finally")) == 1
    assert client.hget(batch_keys(b.id)[0], "sent:then") == b"done"


def test_a_claim_holds_against_others_until_it_runs_out_and_its_claimer_may_retry(
        redis_url: str) -> None:
    """A winner whose dispatch met a Redis fault after its claim claims again when it
    tries again (at least once, as before claims); another process does not, until the
    claim runs out (its claimer died between claim and dispatch): then the sweep does."""
    queue = RedisQueue(connect(redis_url))
    b = batch([bjob.s(1)], then=then_cb.s(), finally_=finally_cb.s()).dispatch(
        connection=redis_url)
    queue.client.delete(QueueKeys("default").ready)
    _won_unsent(queue, b, 1, ago_ms=callbacks.GRACE_MS + 1000)
    state = batch_keys(b.id)[0]
    assert callbacks.claim(queue, b.id, "then", 0)  # claimed, then the dispatch failed
    callbacks.fire(Batch(b.id, queue), {"then": 1}, None)  # its retry, same process
    assert _queued(redis_url) == ["flows.then"]
    seconds, _ = queue.client.time()
    held = f"{(seconds + 60) * 1000}|elsewhere:1"  # another process's claim, holding
    queue.client.hset(state, "sent:finally", held)
    callbacks.fire(Batch(b.id, queue), {"finally": 1}, None)
    batches.sweep(queue)
    assert _queued(redis_url) == ["flows.then"], "not while another's claim holds"
    queue.client.hset(state, "sent:finally", f"{(seconds - 1) * 1000}|elsewhere:1")
    batches.sweep(queue)  # that claimer died: its claim ran out
    assert _queued(redis_url) == ["flows.finally", "flows.then"]


def test_a_batch_state_this_code_did_not_write_does_not_stop_the_sweep(
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A batch whose callbacks field is not JSON (written by hand): its callback is said
    in one error line and marked done; the next batch's is still dispatched."""
    queue = RedisQueue(connect(redis_url))
    broken, good = (batch([bjob.s(1)], then=then_cb.s()).dispatch(connection=redis_url)
                    for _ in range(2))
    queue.client.delete(QueueKeys("default").ready)
    for b in (broken, good):
        _won_unsent(queue, b, 1, ago_ms=callbacks.GRACE_MS + 1000)
    queue.client.hset(batch_keys(broken.id)[0], "callbacks", "{not json")
    with caplog.at_level(logging.ERROR, logger="supervisor_q.batches"):
        batches.sweep(queue)
    assert _queued(redis_url) == ["flows.then"]
    assert [r.getMessage() for r in caplog.records if "cannot be dispatched" in r.getMessage()]
    assert queue.client.hget(batch_keys(broken.id)[0], "sent:then") == b"done"
