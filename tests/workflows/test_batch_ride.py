"""A batch job's count sent without waiting (queue/batchack.py counts_nowait, worker/ahead.py):
with the reserve sent ahead or a held ack, its answer read before the next job; the
callbacks it won dispatched exactly once, each seeing the batch as its count left it; a
lost reply sends the count again and gets the first answer; a worker SIGKILLed while
such a reply is unread leaves the batch with the right counts."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

import pytest
import redis

from supervisor_q.jobs import dispatching
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.batchack import BatchCount, Call, Counted
from supervisor_q.queue.keys import batch_keys
from supervisor_q.worker.loop import Worker
from supervisor_q.worker.settings import WorkerSettings
from supervisor_q.workflows.batches import batch
from tests.helpers import wait_until
from tests.jobmods.flows import bjob, finally_cb, progress_cb, then_cb
from tests.workers import results, running


class CountingQueue(RedisQueue):
    """A real RedisQueue that notes how many counts were sent without waiting."""

    sent_nowait = 0

    def counts_nowait(self, queue: str, counts: Sequence[BatchCount], then: Call) -> None:
        self.sent_nowait += len(counts)
        super().counts_nowait(queue, counts, then)


def test_counts_sent_without_waiting_are_answered_and_a_lost_reply_gets_the_same_answer(
        redis_url: str) -> None:
    made = batch([bjob.s(1), bjob.s(2)], then=then_cb.s()).dispatch()
    queue = RedisQueue(connect(redis_url))
    _, got = queue.reserve("default", default_timeout=10)
    [first] = got.jobs
    queue.reserve_ahead("default", default_timeout=10, ack_ids=[first.id],
                        counts=[BatchCount(made.id, first.id)])
    ahead = queue.ahead_result()
    assert ahead is not None and len(ahead.jobs) == 1, "the reserve sent with the count"
    assert queue.take_counted() == [Counted(made.id, first.id, True, False, False, False)]
    assert queue.take_counted() == [], "each answer is taken once"
    [second] = ahead.jobs
    queue.ack_nowait("default", second.id, counts=[BatchCount(made.id, second.id)])
    wait_until(lambda: queue.client.hget(batch_keys(made.id)[0], "pending") == b"0",
               message="the count sent without waiting to run")
    queue.drop_connection()  # its reply is lost
    assert queue.take_counted() is None, "lost: the worker sends it again"
    acked, again = queue.ack_counting("default", [second.id],
                                      [BatchCount(made.id, second.id)])
    assert acked == 0, "the first ack landed"
    assert again == [Counted(made.id, second.id, True, True, True, False)], \
        "the repeated count gets the first answer: then and finally still won, once"
    p = made.progress()
    assert p is not None and (p.pending, p.processed) == (0, 2)
    queue.close()


@pytest.mark.parametrize(("prefetch", "progress"), [(1, True), (4, True), (16, False)])
def test_a_worker_riding_its_counts_fires_each_callback_once_with_the_right_progress(
        redis_url: str, prefetch: int, progress: bool) -> None:
    """Without a progress callback (known after the batch's first count) the counts of
    prefetched jobs are held, as plain acks are, to ride with a later reserve."""
    jobs = 12
    made = batch([bjob.s(i) for i in range(jobs)], then=then_cb.s(), finally_=finally_cb.s(),
                 progress=progress_cb.s() if progress else None).dispatch()
    queue = CountingQueue(connect(redis_url))
    bound = dispatching._state.bound
    try:
        for _ in range(3):  # a callback dispatched by the reserve that found the queue
            # empty is left for the next run (stop_when_empty)
            Worker(WorkerSettings(queues=("default",), stop_when_empty=True, sleep=0.1, memory=0,
                                  prefetch=prefetch), queue).run()
            if not queue.counts("default")["ready"]:
                break
    finally:  # a worker binds its queue for dispatch in this process: not for later tests
        dispatching._state.bound = bound
        queue.close()
    assert queue.sent_nowait >= jobs // 2 or not progress, "most rode without waiting"
    assert len(results(redis_url, "bjob")) == jobs
    assert len(results(redis_url, "then")) == 1, "then exactly once"
    assert len(results(redis_url, "finally")) == 1, "finally exactly once"
    seen = sorted(r["info"]["processed"] for r in results(redis_url, "progress"))
    assert seen == (list(range(1, jobs + 1)) if progress else []), \
        "one progress per job, each seeing the batch as its own count left it"
    p = made.progress()
    assert p is not None and (p.total, p.pending, p.processed, p.finished) == (
        jobs, 0, jobs, True)


@pytest.mark.slow
def test_a_worker_killed_while_a_ridden_count_is_unread_leaves_the_right_counts(
        redis_url: str) -> None:
    made = batch([bjob.s(1), bjob.s(2), bjob.s(3, 2.0)], then=then_cb.s(),
                 finally_=finally_cb.s()).dispatch()
    client = redis.Redis.from_url(redis_url)
    # --timeout 3: the long job's reservation ends 8 s after it was reserved, then it reruns.
    with running(redis_url, 1, "--timeout", "3", "--tries", "3"):
        # jobs 1 and 2 done; 2's count went with the reserve sent ahead of job 3, which
        # now runs (2 s): its answer is unread when the worker dies.
        wait_until(lambda: client.hget(batch_keys(made.id)[0], "pending") == b"1",
                   timeout=15, message="jobs 1 and 2 counted, job 3 running")
        wait_until(lambda: len(results(redis_url, "bjob")) == 2, timeout=5)
        [pid] = {r["pid"] for r in results(redis_url, "bjob")}
        os.kill(pid, signal.SIGKILL)
    client.delete("results")  # only the rerun's records from here
    with running(redis_url, 1, "--tries", "3"):
        wait_until(lambda: results(redis_url, "then"), timeout=20,
                   message="job 3 to rerun and win then")
        wait_until(lambda: results(redis_url, "finally"), timeout=10)
    assert [r["value"] for r in results(redis_url, "bjob")] == [3], \
        "only the killed job ran again (once); 1 and 2 stayed acked"
    assert len(results(redis_url, "then")) == 1 and len(results(redis_url, "finally")) == 1
    p = made.progress()
    assert p is not None and (p.total, p.pending, p.processed, p.finished) == (3, 0, 3, True)
    assert client.scard(batch_keys(made.id)[1]) == 3, "each job counted once"
    client.close()
