"""Plain jobs and batch jobs in one queue, one worker with prefetch: a plain job's ack
sent with batch counts whose answers are read later (worker/ahead.py counting) is no
batch count, and every callback still fires once."""

from __future__ import annotations

import time

from supervisor_q.jobs import dispatching
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.batchack import BatchCount
from supervisor_q.worker.loop import Worker
from supervisor_q.worker.pending import Pending
from supervisor_q.worker.settings import WorkerSettings
from supervisor_q.workflows.batches import batch
from tests.jobmods.flows import bjob, finally_cb, progress_cb, then_cb
from tests.workers import results


def test_plain_and_batch_jobs_in_one_queue_with_prefetch(redis_url: str) -> None:
    made = []
    for round_ in range(3):
        for i in range(4):
            bjob.dispatch(1000 * round_ + i)
        made.append(batch([bjob.s(100 * round_ + i) for i in range(4)], then=then_cb.s(),
                          finally_=finally_cb.s(), progress=progress_cb.s()).dispatch())
    queue = RedisQueue(connect(redis_url))
    bound = dispatching._state.bound
    try:
        for _ in range(3):  # a callback dispatched by the last reserve waits for a next run
            Worker(WorkerSettings(queues=("default",), stop_when_empty=True, sleep=0.1,
                                  memory=0, prefetch=16), queue).run()
            if not queue.counts("default")["ready"]:
                break
    finally:  # a worker binds its queue for dispatch in this process: not for later tests
        dispatching._state.bound = bound
        queue.close()
    assert len(results(redis_url, "bjob")) == 24, "every job ran, once"
    assert len(results(redis_url, "then")) == 3 and len(results(redis_url, "finally")) == 3
    assert len(results(redis_url, "progress")) == 12, "one progress per batch job"
    for handle in made:
        p = handle.progress()
        assert p is not None and (p.pending, p.processed, p.finished) == (0, 4, True)


def test_a_plain_ack_sent_with_unread_counts_is_no_count(redis_url: str) -> None:
    """Held acks of a plain job and a batch job (a progress callback: its answer is
    wanted before the next job) go in one call; reading the answer before the next job
    looks at the batch job's count only."""
    bjob.dispatch(1)
    made = batch([bjob.s(2)], progress=progress_cb.s()).dispatch()
    queue = RedisQueue(connect(redis_url))
    _, got = queue.reserve("default", default_timeout=10, count=2)
    plain, counted = got.jobs
    bound = dispatching._state.bound
    try:
        worker = Worker(WorkerSettings(queues=("default",), memory=0, prefetch=16), queue)
        queue.ack_nowait("default", plain.id, counted.id,
                         counts=[BatchCount(made.id, counted.id)])
        now = time.monotonic()
        worker._counting([Pending("default", plain.id, None, now),
                          Pending("default", counted.id, BatchCount(made.id, counted.id), now)])
        assert queue.counts_unread == 1
        worker.collect_counts(wait=False)
        assert worker.counting == [] and queue.counts_unread == 0, "the answer was read"
        assert queue.counts("default") == {**queue.counts("default"), "ready": 1,
                                           "reserved": 0}, \
            "both acked; the progress callback the count won is queued"
    finally:  # a worker binds its queue for dispatch in this process: not for later tests
        dispatching._state.bound = bound
        queue.close()
    p = made.progress()
    assert p is not None and (p.pending, p.processed) == (0, 1)
