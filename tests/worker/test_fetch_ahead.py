"""Fetch-ahead (worker/ahead.py): a short job's successor is reserved while it runs, and
is never lost or run twice, whatever stops the worker."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.worker.ahead import AHEAD_BELOW
from supervisor_q.worker.loop import Worker
from tests import workers
from tests.helpers import wait_until
from tests.masters import Master
from tests.worker.test_worker import BASIC, results


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def start(redis_url: str, *flags: str) -> subprocess.Popen:
    """`work` in its own session, so a SIGKILL reaches the guard and the worker alike."""
    return workers.start(redis_url, *flags, imports=BASIC, new_session=True)


def runs(queue: RedisQueue, value: str, phase: str | None = None) -> list[dict]:
    return [r for r in results(queue) if r.get("value") == value
            and (phase is None or r.get("phase") == phase)]


def learn_then_block(queue: RedisQueue, seconds: float) -> None:
    """Three short tests.sleep jobs (the name is short on average), then one of the same
    name that runs `seconds`, then a tests.record job: reserved ahead while it runs."""
    for i in range(3):
        dispatch("tests.sleep", 0.001, f"warm-{i}")
    dispatch("tests.sleep", seconds, "long")
    dispatch("tests.record", "next")


def test_a_short_jobs_successor_is_reserved_while_it_runs(
        redis_url: str, queue: RedisQueue) -> None:
    assert 0.001 < AHEAD_BELOW
    learn_then_block(queue, 1.5)
    worker = start(redis_url)
    try:
        wait_until(lambda: runs(queue, "long", "start"), timeout=15)
        # The running job and its successor: reserved ahead, before the long one ended.
        assert queue.counts("default")["reserved"] == 2
        assert not runs(queue, "next")
        wait_until(lambda: runs(queue, "next"), timeout=15)
        wait_until(lambda: queue.counts("default")["reserved"] == 0, timeout=10)
    finally:
        worker.terminate()
        worker.wait(10)
    assert len(runs(queue, "next")) == 1
    assert [r["attempts"] for r in runs(queue, "next")] == [1]


def test_sigkill_mid_job_runs_the_job_and_its_fetched_ahead_successor_again_once(
        redis_url: str, queue: RedisQueue) -> None:
    learn_then_block(queue, 1.5)
    # tries 3: a standalone worker's reservations come back counted (its attempt spent).
    first = start(redis_url, "--timeout", "2", "--tries", "3")
    try:
        wait_until(lambda: runs(queue, "long", "start"), timeout=15)
        wait_until(lambda: queue.counts("default")["reserved"] == 2, timeout=5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    assert not runs(queue, "next") and not runs(queue, "long", "end")
    # Both come back when their reservation expires (timeout 2 s + the 5 s margin).
    second = start(redis_url, "--timeout", "2", "--tries", "3")
    try:
        wait_until(lambda: runs(queue, "next") and runs(queue, "long", "end"), timeout=20)
        wait_until(lambda: queue.counts("default")["reserved"] == 0, timeout=10)
    finally:
        second.terminate()
        second.wait(10)
    assert len(runs(queue, "next")) == 1, "the fetched-ahead job ran once"
    assert len(runs(queue, "long", "start")) == 2, "the killed job ran again"
    assert len(runs(queue, "long", "end")) == 1, "... once"
    assert [r["attempts"] for r in runs(queue, "next")] == [2]
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 0, "failed": 0}


@pytest.mark.parametrize("prefetch", ["1", "2"])
def test_sigterm_hands_back_the_fetched_ahead_job_uncounted(
        redis_url: str, queue: RedisQueue, prefetch: str) -> None:
    learn_then_block(queue, 1.0)
    worker = start(redis_url, "--prefetch", prefetch)
    try:
        wait_until(lambda: runs(queue, "long", "start"), timeout=15)
        wait_until(lambda: queue.counts("default")["reserved"] == 2, timeout=5)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    finally:  # a failed wait must not leave the worker running on
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    assert len(runs(queue, "long", "end")) == 1, "the running job finished"
    assert not runs(queue, "next")
    assert queue.counts("default") == {"ready": 1, "delayed": 0, "reserved": 0, "failed": 0}
    _, again = queue.reserve("default", default_timeout=60)
    assert [j.attempts for j in again.jobs] == [1], "handing back did not spend an attempt"


def test_prefetch_acks_ride_with_the_reserve_and_every_job_runs_once(
        redis_url: str, queue: RedisQueue) -> None:
    for i in range(200):
        dispatch("tests.record", i)
    worker = start(redis_url, "--prefetch", "16", "--stop-when-empty")
    assert worker.wait(60) == 0, worker.stderr.read() if worker.stderr else ""
    assert sorted(r["value"] for r in results(queue)) == list(range(200))
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 0, "failed": 0}


def test_with_prefetch_16_short_jobs_acks_take_about_one_call_per_16_jobs(
        redis_url: str, queue: RedisQueue) -> None:
    """Acks of short prefetched jobs are held while other jobs are in hand, a reserve
    sent ahead or not: they ride with the next reserve (or go together before a later
    job), not one call per job while that reserve is in flight."""
    for _ in range(320):
        dispatch("tests.noop")
    queue.client.config_resetstat()
    worker = start(redis_url, "--prefetch", "16", "--stop-when-empty")
    assert worker.wait(60) == 0, worker.stderr.read() if worker.stderr else ""
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 0, "failed": 0}
    scripts = queue.client.info("commandstats")["cmdstat_evalsha"]["calls"]
    # 20 reserves, their acks, a few more while the job's runtime is learnt or when the
    # oldest ack waited ACK_HOLD, and start-up's own; one ack call per job made it 150+.
    assert scripts < 100, scripts


def test_prefetched_jobs_acks_are_sent_before_a_job_not_known_short(
        redis_url: str, queue: RedisQueue) -> None:
    """Finished prefetched jobs' acks wait for the next reserve only behind jobs known to
    be short (ACK_HOLD): before a job of a name never run here, they go. A SIGKILL in
    that job then cannot run the finished ones again."""
    for i in range(3):
        dispatch("tests.record", f"quick-{i}")
    dispatch("tests.sleep", 30, "long")
    worker = start(redis_url, "--prefetch", "4", "--tries", "3")
    try:
        wait_until(lambda: runs(queue, "long", "start"), timeout=15)
        wait_until(lambda: queue.counts("default")["reserved"] == 1, timeout=5,
                   message="the three finished jobs acked while the long one runs")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 1, "failed": 0}
    assert sorted(r["value"] for r in results(queue) if r.get("phase") is None) == [
        "quick-0", "quick-1", "quick-2"]


def test_a_reserve_sent_ahead_is_kept_when_another_call_reads_its_reply(
        queue: RedisQueue) -> None:
    first = dispatch("tests.record", "a")
    dispatch("tests.record", "b")
    queue.client.script_flush()  # a server that does not know the scripts yet
    queue.reserve_ahead("default", default_timeout=60, count=1)
    _, now = queue.reserve("default", default_timeout=60)  # reads the owed reply first
    ahead = queue.ahead_result()
    assert ahead is not None and [j.id for j in ahead.jobs] == [first]
    assert [j.payload for j in now.jobs] != [] and now.jobs[0].id != first
    assert queue.ahead_result() is None, "a reply is handed out once"
    queue.reserve_ahead("default", default_timeout=60, ack_ids=[first])
    queue.drop_connection()  # its reply lost with the connection: None, not a stale one
    assert queue.ahead_result() is None
    wait_until(lambda: queue.counts("default")["reserved"] == 1,
               message="the ack sent all the same (b still reserved, a acked)")


AHEAD_PROGRAM = """\
queues: [default]
import: [tests.jobmods.basic]
numprocs: 1
startsecs: 0.2
timeout: 2
tries: 3
"""


def test_a_master_child_killed_mid_job_runs_both_jobs_again_once(
        short_tmp: Path, redis_url: str, queue: RedisQueue) -> None:
    """SIGKILL of a master's child while a short-named job runs long: the master settles
    the running job (released, tries left); the job fetched ahead comes back when its
    reservation expires (timeout 2 s + the margin). Each runs again once."""
    learn_then_block(queue, 1.5)
    with Master(short_tmp, redis_url, {"w": AHEAD_PROGRAM}) as m:
        [pid] = m.wait_running("w", 1)
        wait_until(lambda: runs(queue, "long", "start"), timeout=15)
        wait_until(lambda: queue.counts("default")["reserved"] == 2, timeout=5)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: runs(queue, "next") and runs(queue, "long", "end"), timeout=20,
                   message=f"both ran again; log: {m.tail()}")
        wait_until(lambda: queue.counts("default")["reserved"] == 0, timeout=10)
    assert len(runs(queue, "next")) == 1, "the fetched-ahead job ran once"
    assert len(runs(queue, "long", "start")) == 2 and len(runs(queue, "long", "end")) == 1
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 0, "failed": 0}


def in_process_worker(redis_url: str) -> Worker:
    """A Worker in this process on queue default (its dispatch binding undone after)."""
    from supervisor_q.jobs import dispatching
    from supervisor_q.worker.loop import WorkerSettings

    bound = dispatching._state.bound
    try:
        return Worker(WorkerSettings(queues=("default",)), RedisQueue(connect(redis_url)))
    finally:  # a worker binds its queue for dispatch in this process: not for later tests
        dispatching._state.bound = bound


def test_a_lost_fetch_ahead_reply_hands_its_job_back_and_sends_its_acks_again(
        redis_url: str, queue: RedisQueue) -> None:
    """The connection drops before the reply of a reserve sent ahead is read: the job it
    reserved goes back at once, its attempt given back (not after its reservation
    expires, an attempt spent), and the acks it carried are sent again."""
    from supervisor_q.worker.pending import Pending

    first = dispatch("tests.record", "a")
    second = dispatch("tests.record", "b")
    worker = in_process_worker(redis_url)
    _, got = worker.queue.reserve("default", default_timeout=60)
    assert [j.id for j in got.jobs] == [first]
    worker.pending = [Pending("default", first)]  # a finished
    worker.ran("tests.record", 0.001)
    worker.fetch_ahead(got.jobs[0], "tests.record")
    assert worker.ahead_sent_at and not worker.pending, "sent ahead, with a's ack"
    wait_until(lambda: queue.counts("default")["ready"] == 0, message="b reserved ahead")
    worker.queue.drop_connection()  # the reply is lost
    worker.collect_ahead()
    assert worker.prefetched == []
    assert [p.id for p in worker.pending] == [first], "a's ack goes again"
    assert queue.counts("default") == {"ready": 1, "delayed": 0, "reserved": 0, "failed": 0}
    worker.flush_pending()  # a second ack of a: a logged no-op
    _, again = queue.reserve("default", default_timeout=60)
    assert [(j.id, j.attempts) for j in again.jobs] == [(second, 1)], "attempt given back"


def test_a_job_not_begun_when_a_stop_came_is_handed_back_not_run(
        redis_url: str, queue: RedisQueue) -> None:
    """A stop that arrives while a Redis call before the job waits (an outage: the
    reserve sent ahead, the ack, a longer reservation) leaves the job not begun: it is
    handed back with the other jobs in hand, its attempt given back, instead of run
    once Redis answers."""

    first = dispatch("tests.record", "a")
    worker = in_process_worker(redis_url)
    _, got = worker.queue.reserve("default", default_timeout=60)
    worker.stopping = True  # as the signal handler sets it, here during the calls before
    assert worker.process(got.jobs[0]) is False
    assert runs(queue, "a") == [], "not run"
    worker.shutdown()
    assert queue.counts("default") == {"ready": 1, "delayed": 0, "reserved": 0, "failed": 0}
    _, again = queue.reserve("default", default_timeout=60)
    assert [(j.id, j.attempts) for j in again.jobs] == [(first, 1)], "attempt given back"


def test_the_internal_settle_job_outlasts_a_program_with_one_try(
        redis_url: str, queue: RedisQueue) -> None:
    """The job a guard or master queues to run a failed job's callbacks carries its own
    tries: a worker killed while holding it (its reservation expiring, an attempt
    spent) must not send it to the failed store of a program with tries 1."""
    from supervisor_q.worker import lifecycle

    lifecycle.failed_elsewhere(queue, "default", '{"id":"x","job":"j","queue":"default"}',
                               "killed by signal 9", 1)
    _, got = queue.reserve("default", default_timeout=60)
    decoded = payloads.decode(got.jobs[0].payload)
    assert decoded.job == lifecycle.SETTLE_FAILED
    assert decoded.tries == lifecycle.SETTLE_TRIES > 3
