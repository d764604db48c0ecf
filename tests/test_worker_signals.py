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
    for _ in range(2):
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


# The alarm scenarios run in a fresh, single-threaded interpreter: pytest-timeout arms
# SIGALRM itself, and another thread with SIGALRM unblocked would take the signal.
LATE_ALARM = """
import signal, sys, time
from supervisor_q.timeouts import JobTimeout, alarm

def wait_pending():
    deadline = time.monotonic() + 5
    while signal.SIGALRM not in signal.sigpending():
        assert time.monotonic() < deadline, "no SIGALRM"
        time.sleep(0.005)

try:
    with alarm(0.05) as timer:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        wait_pending()  # the deadline passes in the body's last call; the alarm waits
        %s
except JobTimeout:
    sys.exit("a late alarm turned a finished job into a timeout")
%s
print("finished")
"""


def run_scenario(source: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          timeout=30)


def test_an_alarm_handled_after_the_job_body_returned_is_ignored() -> None:
    """The timer expires during the body's last C call and its handler runs only after
    the body returned, before the timer is cleared: a late alarm, not a timeout."""
    done = run_scenario(LATE_ALARM % (
        "timer.returned = True  # what the worker does right after the body returns\n"
        "        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})  # handled now",
        ""))
    assert (done.returncode, done.stdout.strip()) == (0, "finished"), done.stderr


def test_an_alarm_handled_after_the_timer_was_cleared_is_ignored() -> None:
    done = run_scenario(LATE_ALARM % (
        "pass", "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})  # handled now"))
    assert (done.returncode, done.stdout.strip()) == (0, "finished"), done.stderr


def test_an_alarm_while_the_job_body_runs_raises_job_timeout() -> None:
    done = run_scenario(LATE_ALARM % (
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})  # handled in the body",
        ""))
    assert done.returncode == 1
    assert "a late alarm turned" in done.stderr, "JobTimeout was raised in the body"
