"""`supervisor-q work` under signals and deadlines, in real processes with real signals:
stop signals never strand a job, a late alarm never turns a finished job into a timeout,
and a job stuck in C code is killed soon after its timeout without a master."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.backend import RedisQueue, connect
from supervisor_q.jobs import dispatch
from tests.workers import wait_idle

BASIC = "tests.jobmods.basic"


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def start_worker(redis_url: str, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work",
         "--queue", "default", "--import", BASIC, *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_stop_signals_at_random_moments_never_strand_or_fail_a_job(
        redis_url: str, queue: RedisQueue) -> None:
    """TERM lands on idle workers just as jobs arrive (maybe after the pipelined reserve
    ran on the server): every job is run or handed back at once, none is failed (tries 1)
    or left in the reserved set."""
    rnd = random.Random()
    for _ in range(3):
        workers = [start_worker(redis_url, "--tries", "1", "--sleep", "5") for _ in range(4)]
        try:
            wait_idle(redis_url, len(workers))
            for worker in workers:
                dispatch("tests.record", "x")
                time.sleep(rnd.uniform(0, 0.002))  # a random moment, not a synchronisation
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                assert worker.wait(10) == 0, worker.stderr.read()
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait(5)
        counts = queue.counts("default")
        assert counts["failed"] == 0 and counts["reserved"] == 0, counts
    assert queue.failed_records() == []
