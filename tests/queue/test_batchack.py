"""The batch count in the ack's round trip (queue/batchack.py), on one server: the count
and the ack land together, the answer says which callbacks this worker won, and the
same call again (a retry after a lost reply) gets the same answer, any other none."""

from __future__ import annotations

from supervisor_q.queue import lua_limits
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.batchack import BatchCount, Counted, counted
from supervisor_q.queue.keys import batch_keys
from supervisor_q.workflows.batches import batch
from tests.jobmods.flows import bjob, finally_cb, progress_cb, then_cb


def test_the_count_rides_with_the_reserve_and_a_retry_gets_the_same_answer(
        redis_url: str) -> None:
    made = batch([bjob.s(1)], then=then_cb.s(), progress=progress_cb.s()).dispatch()
    queue = RedisQueue(connect(redis_url))
    _, got = queue.reserve("default", default_timeout=10)
    [job] = got.jobs
    token = queue.token("default", job.id)
    acked, after = queue.reserve("default", default_timeout=10, ack_ids=[job.id],
                                 counts=[BatchCount(made.id, job.id)])
    assert acked == 1 and queue.counts("default")["reserved"] == 0
    assert after.counted == (Counted(made.id, job.id, counted=True, fire_then=True,
                                     fire_finally=True, has_progress=True),)
    p = made.progress()
    assert p is not None and (p.pending, p.processed, p.finished) == (0, 1, True)
    script = queue.script(lua_limits.BATCH_SUCCEEDED)
    again = script(keys=batch_keys(made.id), args=[job.id, queue.holder(), token])
    assert again == [1, 1, 1, 1], "the same call (holder, job, token) gets the same answer"
    other = script(keys=batch_keys(made.id), args=[job.id, "other|1.abc", "other|1.abc|2"])
    assert other == [0, 0, 0, 0], "a rerun elsewhere counts nothing and wins nothing"
    later = script(keys=batch_keys(made.id), args=[job.id, queue.holder(), f"{token}0"])
    assert later == [0, 0, 0, 0], "another reservation by the same worker neither"
    p = made.progress()
    assert p is not None and (p.pending, p.processed) == (0, 1), "still counted once"
    queue.close()


def test_ack_counting_without_a_batch_state_counts_nothing(redis_url: str) -> None:
    queue = RedisQueue(connect(redis_url))
    bjob.dispatch(1)
    _, got = queue.reserve("default", default_timeout=10)
    [job] = got.jobs
    acked, done = queue.ack_counting("default", [job.id], [BatchCount("pruned", job.id)])
    assert acked == 1 and done == [Counted("pruned", job.id, False, False, False, False)]
    queue.close()


def _twin_batch() -> str:
    made = batch([bjob.s(i) for i in range(4)], then=then_cb.s(), finally_=finally_cb.s(),
                 progress=progress_cb.s(), allow_failures=True).dispatch()
    return made.id


def test_jobs_of_one_batch_counted_in_one_call_answer_as_one_call_each(
        redis_url: str) -> None:
    """BATCH_SUCCEEDED_MANY (one call for the jobs of a batch acked together) against
    BATCH_SUCCEEDED sent job by job on a twin batch: the same answers, the same counts,
    a failed job's retry included, and the same answers to the same calls sent again."""
    queue = RedisQueue(connect(redis_url))
    many, single = _twin_batch(), _twin_batch()
    ids = ["j0", "j1", "j2", "j3"]
    for job_id in ids:
        queue.remember("default", job_id, 1)  # each count carries its reservation's token
    fail = queue.script(lua_limits.BATCH_FAILED)
    one = queue.script(lua_limits.BATCH_SUCCEEDED)
    for batch_id in (many, single):
        assert fail(keys=batch_keys(batch_id), args=["j2", 0]) == [1, 1, 0]

    def together(job_ids: list[str]) -> list[Counted]:
        calls = queue.count_calls("default", [BatchCount(many, j) for j in job_ids])
        assert len(calls) == 1, "one call for the jobs of one batch"
        return counted(calls, queue._eval_many(calls))

    def one_by_one(job_ids: list[str]) -> list[Counted]:
        return [Counted(single, j, *(bool(v) for v in one(
            keys=batch_keys(single), args=[j, queue.holder(), queue.token("default", j)])))
            for j in job_ids]

    def answers(found: list[Counted]) -> list[tuple[object, ...]]:
        return [(c.job_id, c.counted, c.fire_then, c.fire_finally, c.has_progress)
                for c in found]

    first = together(["j0", "j1", "j3"])
    assert answers(first) == answers(one_by_one(["j0", "j1", "j3"]))
    assert answers(first) == [("j0", True, False, False, True), ("j1", True, False, False, True),
                              ("j3", True, False, True, True)], "finally: all but j2 (failed) ran"
    assert answers(together(["j0", "j1", "j3"])) == answers(one_by_one(["j0", "j1", "j3"])) \
        == [("j0", False, False, False, False), ("j1", False, False, False, False),
            ("j3", True, False, True, True)], "sent again: the last count's answer, once more"
    last = together(["j3", "j2"])
    assert answers(last) == answers(one_by_one(["j3", "j2"])) \
        == [("j3", True, False, True, True), ("j2", True, True, False, True)], \
        "j3 still the last count; j2's retry succeeded: then, once (finally was j3's)"
    for batch_id in (many, single):
        state = queue.client.hgetall(batch_keys(batch_id)[0])
        assert (state[b"pending"], queue.client.scard(batch_keys(batch_id)[2])) == (b"0", 0)
        assert queue.client.scard(batch_keys(batch_id)[1]) == 4, "each job counted once"
    queue.close()
