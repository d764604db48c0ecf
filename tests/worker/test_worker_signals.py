"""`supervisor-q work` under signals and deadlines, in real processes with real signals:
stop signals never strand a job, a late alarm never turns a finished job into a timeout,
and a job stuck in C code is killed soon after its timeout without a master."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import psutil
import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q import exitcodes
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.workers import wait_idle

BASIC = "tests.jobmods.basic"


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def start_worker(redis_url: str, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work", "--quiet",
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


def test_a_wait_left_on_a_signal_still_reads_the_job_its_reserve_took(
        queue: RedisQueue) -> None:
    """A stop signal during an idle wait: the BLPOP is unblocked from another connection
    and the pipelined RESERVE still runs; its job comes back to the caller (to be handed
    back) instead of being abandoned in the reserved set with an attempt spent."""
    queue.reserve("default", default_timeout=60)  # loads the RESERVE script
    built = payloads.build("tests.noop", "default", [], {})
    queue.push("default", built.id, payloads.encode(built))
    queue.client.delete(queue.keys("default").notify)  # a job, but no token to wake on
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, bytes([signal.SIGTERM]))  # what set_wakeup_fd writes
        os.set_blocking(read_fd, False)
        started = time.monotonic()
        result = queue.wait_and_reserve(["default"], 5.0, default_timeout=60, wake_fd=read_fd,
                                        leave=lambda: True)
        assert time.monotonic() - started < 1.0, "the wait ended at once, not at 5 s"
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert result is not None and [j.id for j in result.jobs] == [built.id]
    assert queue.client.ping(), "the connection stays usable"
    _, again = queue.reserve("default", default_timeout=60)
    assert again.jobs == []


# The alarm scenarios run in a fresh, single-threaded interpreter: pytest-timeout arms
# SIGALRM itself, and another thread with SIGALRM unblocked would take the signal.
LATE_ALARM = """
import signal, sys, time
from supervisor_q.worker.timeouts import JobTimeout, alarm

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


def results(queue: RedisQueue) -> list[dict]:
    return [json.loads(r) for r in queue.client.lrange("results", 0, -1)]


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.kill()
        worker.wait(5)


def test_work_kills_a_job_stuck_in_c_soon_after_its_timeout(
        redis_url: str, queue: RedisQueue) -> None:
    """tests.stuck_in_c (timeout 1 s) blocks SIGALRM and SIGTERM and spins in C: without
    a master, `work` still ends it about 1 s past its timeout, fails it at once with
    reason "timeout" (tries 1), and exits 14."""
    job_id = dispatch("tests.stuck_in_c")
    worker = start_worker(redis_url)
    try:
        [started] = wait_until(lambda: results(queue), timeout=15, message="the job's start")
        wait_until(lambda: not psutil.pid_exists(started["pid"]), timeout=10,
                   message="the process that ran the job to be killed")
        killed_after = time.time() - started["at"]
        code = worker.wait(10)
    finally:
        stop(worker)
    assert code == exitcodes.TIMEOUT, worker.stderr.read()
    assert killed_after < 1 + 1 + 0.5, "ran about 1 s past its timeout at most"
    [record] = queue.failed_records()
    assert record["id"] == job_id and record["reason"].startswith("timeout")
    assert queue.counts("default")["reserved"] == 0, "settled at once, not left to expiry"


def test_the_worker_dies_with_a_sigkilled_work_process(redis_url: str,
                                                       queue: RedisQueue) -> None:
    dispatch("tests.sleep", 30)
    worker = start_worker(redis_url)
    try:
        [started] = wait_until(lambda: results(queue), timeout=15, message="the job's start")
        assert started["pid"] != worker.pid, "the job runs in the guarded child"
        worker.kill()
        worker.wait(5)
        wait_until(lambda: not psutil.pid_exists(started["pid"]), timeout=5,
                   message="the worker child to die with its guard")
    finally:
        stop(worker)


def test_a_second_interrupt_hands_the_running_job_back(redis_url: str,
                                                       queue: RedisQueue) -> None:
    """The first INT lets the job finish; a later one interrupts it (forwarded by the
    guard), hands it back and the worker exits 0."""
    dispatch("tests.sleep", 30)
    worker = start_worker(redis_url)
    try:
        wait_until(lambda: results(queue), timeout=15, message="the job's start")

        def handed_back() -> bool:
            if queue.counts("default")["ready"] == 1:
                return True
            worker.send_signal(signal.SIGINT)
            return False

        wait_until(handed_back, timeout=10, interval=0.25, message="the job handed back")
        assert worker.wait(10) == 0, worker.stderr.read()
    finally:
        stop(worker)
    _, again = queue.reserve("default", default_timeout=60)
    assert [j.attempts for j in again.jobs] == [1], "its attempt given back"


def test_a_stop_ends_the_rest_between_jobs(redis_url: str, queue: RedisQueue) -> None:
    """`--rest 60` after a job: a TERM ends the rest, the finished job's ack goes and the
    worker exits at once, not after the rest."""
    dispatch("tests.record", "rested")
    worker = start_worker(redis_url, "--rest", "60")
    try:
        wait_until(lambda: results(queue), timeout=15, message="the job")
        began = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0
        assert time.monotonic() - began < 5
    finally:
        stop(worker)
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 0, "failed": 0}
