"""Batch before/progress callbacks, a batch as a step of a chain, and the Skip
middleware, with real workers."""

from __future__ import annotations

import redis

from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.workflows.batches import batch
from supervisor_q.workflows.chains import chain
from tests.helpers import wait_until
from tests.jobmods.flows import (
    before_cb,
    bjob,
    catch_cb,
    finally_cb,
    on_catch,
    progress_cb,
    skip_always,
    skip_unless,
    skip_when,
    step,
    then_cb,
)
from tests.workers import results, running


def drained(redis_url: str, queue: str = "default") -> bool:
    client = redis.Redis.from_url(redis_url)
    try:
        return (client.llen(f"sq:{{{queue}}}:ready") == 0
                and client.zcard(f"sq:{{{queue}}}:reserved") == 0)
    finally:
        client.close()


def test_before_runs_first_and_progress_after_each_successful_job(redis_url: str) -> None:
    b = batch([bjob.s(i) for i in range(4)] + [bjob.s(9, broken=True)], allow_failures=True,
              before=before_cb.s(), progress=progress_cb.s(), finally_=finally_cb.s()
              ).dispatch()
    with running(redis_url, 1):
        wait_until(lambda: results(redis_url, "finally"), timeout=15)
        wait_until(lambda: drained(redis_url), timeout=10)
    kinds = [r["kind"] for r in results(redis_url)]
    assert kinds[0] == "before", "before is queued ahead of the batch's jobs"
    [before] = results(redis_url, "before")
    assert before["info"]["id"] == b.id and before["info"]["total"] == 5
    assert before["info"]["processed"] == 0
    progress = results(redis_url, "progress")
    assert len(progress) == 4, "one progress per successful job, none for the failed one"
    assert sorted(p["info"]["processed"] for p in progress) == [1, 2, 3, 4]


def test_a_batch_inside_a_chain_runs_between_its_neighbours(redis_url: str) -> None:
    chain([step.s("a"), batch([bjob.s(1, 0.2), bjob.s(2)], then=then_cb.s()),
           step.s("c")], catch=on_catch.s()).dispatch()
    first = chain([batch([bjob.s(3)]), step.s("d")]).dispatch()  # a chain may start with one
    assert first
    with running(redis_url, 3):
        wait_until(lambda: len(results(redis_url, "step")) == 3, timeout=15)
        wait_until(lambda: drained(redis_url), timeout=10)
    order = [(r["kind"], r.get("value")) for r in results(redis_url)
             if r["kind"] in ("step", "bjob", "then")]
    at = {item: n for n, item in enumerate(order)}
    assert at[("step", "a")] < at[("bjob", 1)] and at[("step", "a")] < at[("bjob", 2)]
    assert at[("step", "c")] > max(at[("bjob", 1)], at[("bjob", 2)])
    assert at[("step", "d")] > at[("bjob", 3)]
    assert len(results(redis_url, "then")) == 1
    assert results(redis_url, "catch") == []


def test_a_failing_batch_stops_its_chain_and_runs_the_catch(redis_url: str) -> None:
    chain([batch([bjob.s(1, broken=True), bjob.s(2)], catch=catch_cb.s()),
           step.s("never")], catch=on_catch.s(note="chain")).dispatch()
    with running(redis_url, 2):
        wait_until(lambda: results(redis_url, "catch"), timeout=15, message="chain catch")
        wait_until(lambda: drained(redis_url), timeout=10)
    assert results(redis_url, "step") == [], "the chain stopped at the batch"
    [caught] = results(redis_url, "catch")
    failure = caught["failure"]
    assert caught["note"] == "chain" and failure["job"] == "batch"
    assert len(failure["failed_job_ids"]) == 1 and failure["skipped"] == ["flows.step"]
    assert len(results(redis_url, "batch_catch")) == 1, "the batch's own catch ran too"


def test_skip_when_and_unless_decide_at_run_time_and_never_fail(redis_url: str) -> None:
    ids = [skip_when.dispatch(1), skip_when.dispatch(2), skip_unless.dispatch(1),
           skip_unless.dispatch(2), skip_always.dispatch(0)]
    assert all(ids)
    client = redis.Redis.from_url(redis_url)
    client.set("skip:1", "1")  # after dispatch: the condition is read when the job runs
    chain([skip_always.s(5), step.s("after skip")]).dispatch()
    with running(redis_url, 1):
        wait_until(lambda: results(redis_url, "step"), timeout=15)
        wait_until(lambda: drained(redis_url), timeout=10)
    assert [r["value"] for r in results(redis_url, "ran_when")] == [2]
    assert [r["value"] for r in results(redis_url, "ran_unless")] == [1]
    assert results(redis_url, "ran_always") == []
    assert RedisQueue(connect(redis_url)).failed_records() == [], "skipped is not failed"
    assert client.llen("sq:{default}:ready") == 0, "skipped jobs are deleted, not released"
