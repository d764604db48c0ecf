"""The batch count in the ack's round trip (queue/batchack.py), on one server: the count
and the ack land together, the answer says which callbacks this worker won, and the
same call again (a retry after a lost reply) gets the same answer, any other none."""

from __future__ import annotations

from supervisor_q.queue import lua_limits
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.batchack import BatchCount, Counted
from supervisor_q.queue.keys import batch_keys
from supervisor_q.workflows.batches import batch
from tests.jobmods.flows import bjob, progress_cb, then_cb


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
