"""Batches with real workers: callbacks exactly once under 4 workers, progress,
failures and retry-batch, cancel, adding jobs from a job, pruning."""

from __future__ import annotations

import subprocess
import sys

import redis

from supervisor_q.workflows.batches import Batch, batch, find
from tests.helpers import wait_until
from tests.jobmods.flows import add_more, bjob, catch_cb, finally_cb, step, then_cb
from tests.workers import results, running


def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                           *args], capture_output=True, text=True, timeout=30)


def callbacks(redis_url: str, kind: str, batch_id: str) -> list[dict]:
    return [r for r in results(redis_url, kind) if r["info"]["id"] == batch_id]


def test_callbacks_run_exactly_once_under_four_workers(redis_url: str) -> None:
    made: list[Batch] = []
    for n in range(3):  # several batches, so last jobs often finish at the same moment
        items = [bjob.s(i) for i in range(8)] + [[step.s(f"c{n}-1"), step.s(f"c{n}-2")]]
        made.append(batch(items, name=f"b{n}", then=then_cb.s(), catch=catch_cb.s(),
                          finally_=finally_cb.s()).dispatch())
    with running(redis_url, 4):
        for b in made:
            wait_until(lambda b=b: callbacks(redis_url, "finally", b.id)
                       and callbacks(redis_url, "then", b.id), timeout=20)
        client = redis.Redis.from_url(redis_url)
        wait_until(lambda: client.llen("sq:{default}:ready") == 0
                   and client.zcard("sq:{default}:reserved") == 0, timeout=10)
    for b in made:
        assert len(callbacks(redis_url, "then", b.id)) == 1
        assert len(callbacks(redis_url, "finally", b.id)) == 1
        assert callbacks(redis_url, "batch_catch", b.id) == []
        p = b.progress()
        assert p is not None
        assert (p.total, p.pending, p.failed, p.processed, p.percent) == (10, 0, 0, 10, 100)
        assert p.finished and not p.cancelled
        [then] = callbacks(redis_url, "then", b.id)
        assert then["info"]["processed"] == 10
    assert len(results(redis_url, "bjob")) == 24
    chain_steps = [r["value"] for r in results(redis_url, "step") if r["value"].startswith("c0")]
    assert chain_steps == ["c0-1", "c0-2"]


def test_failure_runs_catch_and_finally_then_retry_batch_runs_then(redis_url: str) -> None:
    b = batch([bjob.s(1), bjob.s(2, broken=True), bjob.s(3)], then=then_cb.s(),
              catch=catch_cb.s(), finally_=finally_cb.s(), allow_failures=True).dispatch()
    with running(redis_url, 2):
        wait_until(lambda: callbacks(redis_url, "finally", b.id), timeout=15)
        wait_until(lambda: callbacks(redis_url, "batch_catch", b.id), timeout=5)
        p = b.progress()
        assert p is not None
        assert (p.total, p.pending, p.failed, p.processed) == (3, 1, 1, 2)
        assert p.percent == 67 and not p.cancelled, "allow_failures does not cancel"
        [caught] = callbacks(redis_url, "batch_catch", b.id)
        assert caught["info"]["failed_job"]["job"] == "flows.bjob"
        assert callbacks(redis_url, "then", b.id) == []
        redis.Redis.from_url(redis_url).set("fixed", "1")
        done = cli(redis_url, "failed", "retry-batch", b.id)
        assert done.returncode == 0 and "queued 1" in done.stdout, done.stderr
        wait_until(lambda: callbacks(redis_url, "then", b.id), timeout=15)
    p = b.progress()
    assert p is not None and (p.pending, p.failed, p.processed, p.percent) == (0, 0, 3, 100)
    assert len(callbacks(redis_url, "finally", b.id)) == 1, "finally runs once only"
    assert len(callbacks(redis_url, "batch_catch", b.id)) == 1


def test_first_failure_cancels_a_strict_batch(redis_url: str) -> None:
    b = batch([bjob.s(1, broken=True)] + [bjob.s(i, 0.05) for i in range(2, 8)],
              then=then_cb.s(), finally_=finally_cb.s()).dispatch()
    with running(redis_url, 1):
        wait_until(lambda: callbacks(redis_url, "finally", b.id), timeout=15)
    p = b.progress()
    assert p is not None and p.cancelled and p.failed == 1 and p.finished
    assert len(results(redis_url, "skipped")) == 6, "later jobs saw batch.cancelled"
    assert callbacks(redis_url, "then", b.id) == []


def test_cancel_stops_remaining_jobs(redis_url: str) -> None:
    b = batch([bjob.s(i, 0.1) for i in range(30)], then=then_cb.s(),
              finally_=finally_cb.s()).dispatch()
    with running(redis_url, 1):
        wait_until(lambda: len(results(redis_url, "bjob")) >= 2, timeout=15)
        b.cancel()
        wait_until(lambda: callbacks(redis_url, "finally", b.id), timeout=15)
    assert b.cancelled
    ran, skipped = len(results(redis_url, "bjob")), len(results(redis_url, "skipped"))
    assert ran + skipped == 30 and skipped >= 15
    assert callbacks(redis_url, "then", b.id) == [], "then does not run for a cancelled batch"
    p = b.progress()
    assert p is not None and p.cancelled and p.finished and p.pending == 0


def test_cancel_from_the_cli(redis_url: str) -> None:
    b = batch([bjob.s(1)]).dispatch()
    done = cli(redis_url, "batches", "cancel", b.id)
    assert done.returncode == 0 and b.cancelled, done.stderr
    assert cli(redis_url, "batches", "cancel", "no-such-batch").returncode == 1


def test_jobs_added_from_a_job_are_counted_and_prune(redis_url: str) -> None:
    b = batch([add_more.s(3), bjob.s(1)], then=then_cb.s()).dispatch()
    with running(redis_url, 2):
        wait_until(lambda: callbacks(redis_url, "then", b.id), timeout=15)
    assert sorted(r["value"] for r in results(redis_url, "bjob") if r["value"] != "adder") == [
        1, 100, 101, 102]
    p = b.progress()
    assert p is not None and (p.total, p.pending, p.processed) == (5, 0, 5)
    shown = cli(redis_url, "batches", "show", b.id)
    assert '"percent": 100' in shown.stdout
    pruned = cli(redis_url, "batches", "prune", "--hours", "0")
    assert "pruned 1" in pruned.stdout, pruned.stderr
    assert find(b.id).progress() is None
