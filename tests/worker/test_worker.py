"""The worker (`supervisor-q work`) against the real server, in real processes with real signals."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q import exitcodes
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RESERVATION_MARGIN, RedisQueue, connect
from supervisor_q.queue.keys import JOBS_KEY, QueueKeys
from tests.helpers import wait_until
from tests.workers import wait_idle

BASIC = "tests.jobmods.basic"


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def start_worker(redis_url: str, *flags: str, queues: str = "default") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work", "--quiet",
         "--queue", queues, "--import", BASIC, *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def running_worker(redis_url: str, *flags: str) -> Iterator[subprocess.Popen]:
    """A worker in the background for the block, terminated (and reaped) after it."""
    worker = start_worker(redis_url, *flags)
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(10)


def run_worker(redis_url: str, *flags: str, queues: str = "default",
               timeout: float = 60) -> subprocess.CompletedProcess:
    proc = start_worker(redis_url, *flags, queues=queues)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def results(queue: RedisQueue) -> list[dict]:
    return [json.loads(r) for r in queue.client.lrange("results", 0, -1)]


def failed(queue: RedisQueue) -> list[dict]:
    return queue.failed_records()


def _kill_if_running(proc: subprocess.Popen) -> None:
    """A test's cleanup: a process the test left running is killed and reaped."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


def test_queues_are_served_in_priority_order(redis_url: str, queue: RedisQueue) -> None:
    dispatch("tests.record", "low-1", queue="low")
    dispatch("tests.record", "high-1", queue="high")
    dispatch("tests.record", "low-2", queue="low")
    dispatch("tests.record", "high-2", queue="high")
    done = run_worker(redis_url, "--stop-when-empty", queues="high,low")
    assert done.returncode == 0, done.stderr
    assert [r["value"] for r in results(queue)] == ["high-1", "high-2", "low-1", "low-2"]


def test_once_runs_exactly_one_job(redis_url: str, queue: RedisQueue) -> None:
    for i in range(3):
        dispatch("tests.record", i)
    done = run_worker(redis_url, "--once")
    assert done.returncode == 0, done.stderr
    assert [r["value"] for r in results(queue)] == [0]
    assert queue.size("default") == 2
    assert queue.counts("default")["reserved"] == 0, "the job was acked before exit"


def test_delayed_job_runs_after_its_delay(redis_url: str, queue: RedisQueue) -> None:
    dispatched = time.time()
    dispatch("tests.record", "late", delay=1.0)
    with running_worker(redis_url):
        wait_until(lambda: results(queue), timeout=10)
        assert results(queue)[0]["at"] - dispatched >= 0.95


def test_exceptions_retry_with_backoff_list_then_fail(redis_url: str, queue: RedisQueue) -> None:
    job_id = dispatch("tests.backoff")  # tries=3, backoff=[1, 2]
    with running_worker(redis_url):
        wait_until(lambda: failed(queue), timeout=20)
    runs = results(queue)
    assert [r["attempts"] for r in runs] == [1, 2, 3]
    assert runs[1]["at"] - runs[0]["at"] >= 0.95
    assert runs[2]["at"] - runs[1]["at"] >= 1.95
    [record] = failed(queue)
    assert record["id"] == job_id
    assert record["attempts"] == 3
    assert "max attempts (3) reached" in record["reason"]
    assert "RuntimeError: again" in record["exception"]


def test_max_exceptions_fails_before_tries(redis_url: str, queue: RedisQueue) -> None:
    dispatch("tests.boom_limited")  # tries=10, max_exceptions=2
    with running_worker(redis_url):
        wait_until(lambda: failed(queue), timeout=15)
    assert len(results(queue)) == 2
    assert "max exceptions (2)" in failed(queue)[0]["reason"]


def test_retry_until_beats_tries(redis_url: str, queue: RedisQueue) -> None:
    with running_worker(redis_url):
        # The deadline counts from now: dispatch only once the worker is up (it publishes
        # its registry right before its first reserve), however slowly it started.
        wait_until(lambda: queue.client.hexists(JOBS_KEY, "tests.retry_until"), timeout=20)
        built = payloads.build("tests.retry_until", "default", [], {}, tries=1,
                               retry_until=time.time() + 1.5)
        queue.push("default", built.id, payloads.encode(built))
        wait_until(lambda: failed(queue), timeout=15)
    assert len(results(queue)) >= 2, "tries=1 did not stop the retries: retry_until rules"
    assert "retry_until" in failed(queue)[0]["reason"]


def test_release_from_inside_the_job(redis_url: str, queue: RedisQueue) -> None:
    dispatch("tests.release_once", 0.5)
    with running_worker(redis_url):
        wait_until(lambda: len(results(queue)) == 2, timeout=10)
    first, second = results(queue)
    assert (first["attempts"], second["attempts"]) == (1, 2)
    assert second["at"] - first["at"] >= 0.45
    assert failed(queue) == []


def test_fail_from_inside_the_job_stops_retries(redis_url: str, queue: RedisQueue) -> None:
    dispatch("tests.fail_now")  # tries=5
    done = run_worker(redis_url, "--stop-when-empty")
    assert done.returncode == 0
    assert len(results(queue)) == 1
    assert failed(queue)[0]["reason"] == "the job said no"


def test_sigkilled_worker_job_runs_again_with_attempt_counted(
        redis_url: str, queue: RedisQueue) -> None:
    built = payloads.build("tests.sleep", "default", [30], {}, timeout=1)
    queue.push("default", built.id, payloads.encode(built))
    victim = start_worker(redis_url, "--tries", "3")
    wait_until(lambda: results(queue), timeout=10)
    victim.kill()
    victim.wait(10)
    assert queue.counts("default")["reserved"] == 1, "the job stays reserved, not lost"
    rescuer = start_worker(redis_url, "--tries", "3")
    try:
        wait_until(lambda: len(results(queue)) >= 2, timeout=20)
    finally:
        rescuer.kill()
        rescuer.wait(10)
    second = results(queue)[1]
    assert second["id"] == built.id
    assert second["attempts"] == 2


def test_python_level_timeout_fails_job_and_exits_with_timeout_code(
        redis_url: str, queue: RedisQueue) -> None:
    dispatch("tests.sleep_short_timeout", 30)  # timeout=1
    started = time.monotonic()
    done = run_worker(redis_url, timeout=30)
    assert done.returncode == exitcodes.TIMEOUT, done.stderr
    assert time.monotonic() - started < 10
    [record] = failed(queue)
    assert record["reason"].startswith("timeout")
    assert [r["phase"] for r in results(queue)] == ["start"]


def test_timeout_releases_when_tries_remain(redis_url: str, queue: RedisQueue) -> None:
    dispatch("tests.sleep_short_timeout", 30)
    done = run_worker(redis_url, "--tries", "2", timeout=30)
    assert done.returncode == exitcodes.TIMEOUT
    assert failed(queue) == []
    assert queue.size("default") == 1, "released for its second try"


def test_sigterm_mid_job_finishes_the_job_then_exits_zero(
        redis_url: str, queue: RedisQueue) -> None:
    dispatch("tests.sleep", 1.5, "slow")
    dispatch("tests.record", "next")
    worker = start_worker(redis_url)
    wait_until(lambda: results(queue), timeout=10)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    phases = [r.get("phase") for r in results(queue)]
    assert phases == ["start", "end"], "finished the job, took no new one"
    assert queue.counts("default") == {"ready": 1, "delayed": 0, "reserved": 0, "failed": 0}


def test_idle_worker_reacts_to_sigterm_at_once(redis_url: str) -> None:
    worker = start_worker(redis_url, "--sleep", "30")
    wait_idle(redis_url, 1)  # blocked in its wait for jobs
    sent = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert time.monotonic() - sent < 1.0, "the blocking wait was cut short"



@pytest.mark.parametrize(("flags", "code"), [
    (("--max-jobs", "2"), exitcodes.MAX_JOBS),
    (("--max-time", "1"), exitcodes.MAX_TIME),
])
def test_recycle_limits_exit_with_their_codes(redis_url: str, queue: RedisQueue,
                                              flags: tuple, code: int) -> None:
    for i in range(5):
        dispatch("tests.record", i)
    done = run_worker(redis_url, *flags, timeout=30)
    assert done.returncode == code, done.stderr
    if code == exitcodes.MAX_JOBS:
        assert len(results(queue)) == 2
    # said in one line: `work` ends here, whoever runs it must start it again
    [said] = [line for line in done.stderr.splitlines() if "exiting with code" in line]
    assert f"exiting with code {code} ({exitcodes.DESCRIPTIONS[code]})" in said
    assert "process manager" in said


def test_memory_limit_exits_after_the_job(redis_url: str, queue: RedisQueue) -> None:
    dispatch("tests.allocate", 80)
    dispatch("tests.record", "after")
    done = run_worker(redis_url, "--memory", "60", timeout=30)
    assert done.returncode == exitcodes.MEMORY, done.stderr
    assert [r.get("megabytes") for r in results(queue)] == [80]
    assert queue.counts("default")["reserved"] == 0, "the finished job was acked"


@pytest.mark.parametrize(("raw", "reason"), [
    ("not json at all", "not valid JSON"),
    ('{"id": "x", "queue": "default"}', "lacks required"),
    ('{"v":1,"timeout":null,"id":"x","job":"os:system","queue":"default","args":["id"]}',
     "unknown job 'os:system'"),
    ('{"v":1,"timeout":null,"id":"x","job":"tests.jobmods.evil:run","queue":"default"}',
     "unknown job"),
    # a name shown as every id and name is (ids.py): NEL and U+2028 as \\uNNNN
    ('{"id":"x","job":"a\\u0085b\\u2028c","queue":"default"}',
     "unknown job 'a\\u0085b\\u2028c':"),
])
def test_bad_payloads_are_failed_and_nothing_is_imported(
        redis_url: str, queue: RedisQueue, raw: str, reason: str) -> None:
    queue.push("default", "bad-1", raw)
    done = run_worker(redis_url, "--stop-when-empty")
    assert done.returncode == 0, done.stderr
    [record] = failed(queue)
    assert reason in record["reason"]
    assert results(queue) == [], "nothing was imported or ran (evil.py records on import)"


def test_failed_job_retried_from_the_cli_runs_again(redis_url: str, queue: RedisQueue) -> None:
    job_id = dispatch("tests.boom", "x")
    run_worker(redis_url, "--stop-when-empty")
    assert [r["id"] for r in failed(queue)] == [job_id]
    listed = subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                             "failed", "list", "--json"], capture_output=True, text=True,
                            check=True)
    [entry] = json.loads(listed.stdout)
    assert set(entry) == {"row", "id", "job", "queue", "args", "kwargs", "attempts", "failed_at",
                          "reason", "exception"}
    assert entry["job"] == "tests.boom" and entry["args"] == ["x"]
    subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                    "failed", "retry", job_id], check=True, capture_output=True)
    assert failed(queue) == []
    run_worker(redis_url, "--stop-when-empty")
    assert [r["id"] for r in results(queue)] == [job_id, job_id]


def test_worker_survives_a_redis_restart_while_waiting(
        redis_db, redis_url: str, queue: RedisQueue) -> None:
    with running_worker(redis_url, "--sleep", "1") as worker:
        dispatch("tests.record", "before")
        wait_until(lambda: len(results(queue)) == 1, timeout=10)
        redis_db.restart()
        queue = RedisQueue(connect(redis_url))
        dispatch("tests.record", "after", connection=redis_url)
        wait_until(lambda: len(results(queue)) == 2, timeout=20)
        assert worker.poll() is None, "the worker did not crash"
    assert [r["value"] for r in results(queue)] == ["before", "after"]


def test_prefetch_runs_every_job_once(redis_url: str, queue: RedisQueue) -> None:
    for i in range(10):
        dispatch("tests.record", i)
    done = run_worker(redis_url, "--prefetch", "4", "--stop-when-empty")
    assert done.returncode == 0, done.stderr
    assert sorted(r["value"] for r in results(queue)) == list(range(10))
    assert queue.counts("default")["reserved"] == 0


def test_graceful_stop_hands_back_prefetched_jobs_uncounted(
        redis_url: str, queue: RedisQueue) -> None:
    dispatch("tests.sleep", 1.5, "slow")
    dispatch("tests.record", "a")
    dispatch("tests.record", "b")
    worker = start_worker(redis_url, "--prefetch", "3")
    wait_until(lambda: results(queue), timeout=10)
    assert queue.counts("default")["reserved"] == 3, "all three reserved in one go"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert queue.counts("default") == {"ready": 2, "delayed": 0, "reserved": 0, "failed": 0}
    _, again = queue.reserve("default", default_timeout=60, count=2)
    assert [j.attempts for j in again.jobs] == [1, 1], "handing back did not spend attempts"


def test_prefetched_jobs_behind_a_slow_job_are_handed_back_not_held(
        redis_url: str, queue: RedisQueue) -> None:
    slow = 2.5  # well past PREFETCH_HOLD (1 s)
    dispatch("tests.sleep", slow, "slow")
    dispatch("tests.record_reservation", "a")
    dispatch("tests.record_reservation", "b")
    done = run_worker(redis_url, "--prefetch", "3", "--stop-when-empty", "--timeout", "10",
                      timeout=30)
    assert done.returncode == 0, done.stderr
    quick = [r for r in results(queue) if r.get("value") in ("a", "b")]
    assert sorted(r["value"] for r in quick) == ["a", "b"], "each ran exactly once"
    assert [r["attempts"] for r in quick] == [1, 1], "the hand-back counts no attempt"
    # Reserved afresh after the slow job: a full timeout + margin ahead, not the
    # reservation taken before the slow job, which had `slow` seconds less.
    full = 10 + RESERVATION_MARGIN
    assert [round(full - r["reserved_for"], 1) < slow / 2 for r in quick] == [True, True], quick


def test_worker_started_while_redis_is_down_waits_for_it(redis_db, redis_url: str,
                                                         short_tmp) -> None:
    redis_db.stop()
    log = short_tmp / "worker.log"
    with open(log, "w") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work", "--quiet",
             "--queue", "default", "--import", BASIC, "--sleep", "1"], stderr=err)
    try:
        wait_until(lambda: "Redis unavailable" in log.read_text(), timeout=10)
        assert worker.poll() is None, "no crash while Redis is down"
        redis_db.start()
        queue = RedisQueue(connect(redis_url))
        dispatch("tests.record", "late", connection=redis_url)
        wait_until(lambda: results(queue), timeout=20)
    finally:
        worker.terminate()
        worker.wait(10)


def start_holding_four(redis_url: str, queue: RedisQueue, log, seconds: float
                       ) -> subprocess.Popen:
    """`work --prefetch 4` (stderr to log) once it runs a tests.sleep job of seconds,
    three tests.record jobs prefetched behind it."""
    dispatch("tests.sleep", seconds, "long")
    for i in range(3):
        dispatch("tests.record", i)
    with open(log, "w") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work",
             "--queue", "default", "--import", BASIC, "--prefetch", "4"], stderr=err)
    wait_until(lambda: any(r.get("phase") == "start" for r in results(queue)), timeout=15)
    return worker


def test_a_worker_stopped_while_redis_is_down_backs_off_then_hands_back(
        redis_db, redis_url: str, queue: RedisQueue, short_tmp) -> None:
    """SIGTERM with prefetched jobs in hand while Redis is down: the worker waits for
    Redis with its backoff (it once retried in a busy loop, a core at 100 % until
    killed), then hands the jobs back and exits."""
    import psutil

    log = short_tmp / "worker.log"
    worker = start_holding_four(redis_url, queue, log, 1.0)
    try:
        assert queue.counts("default")["reserved"] == 4
        redis_db.stop()
        child = wait_until(lambda: psutil.Process(worker.pid).children(), timeout=5)[0]
        worker.send_signal(signal.SIGTERM)
        wait_until(lambda: "Redis unavailable" in log.read_text(), timeout=15)
        used = sum(child.cpu_times()[:2])
        time.sleep(2.0)  # a span of waiting, whose CPU time is the measure
        assert sum(child.cpu_times()[:2]) - used < 0.5, "it waits, it does not spin"
        assert worker.poll() is None, "the jobs in hand are not given up"
        redis_db.start()
        assert worker.wait(30) == 0
    finally:
        _kill_if_running(worker)
    counts = queue.counts("default")
    assert counts["reserved"] == 0 and counts["ready"] + counts["delayed"] == 4, counts


def test_a_second_stop_while_redis_is_down_exits_leaving_jobs_to_expiry(
        redis_db, redis_url: str, queue: RedisQueue, short_tmp) -> None:
    """Told to stop while Redis is down, the worker waits for Redis to hand its jobs
    back; told again, it gives that up, says so in one line and exits: what it held
    comes back when its reservations expire (nothing is lost)."""
    log = short_tmp / "worker.log"
    worker = start_holding_four(redis_url, queue, log, 0.5)
    try:
        redis_db.stop()
        worker.send_signal(signal.SIGTERM)
        wait_until(lambda: "Redis unavailable" in log.read_text(), timeout=15)
        assert worker.poll() is None, "the first stop waits for Redis"
        time.sleep(3.0)  # an outage long enough that the retries' pauses reach seconds
        began = time.time()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    finally:
        _kill_if_running(worker)
        redis_db.start()
    [line] = [x for x in log.read_text().splitlines() if "stopping without Redis" in x]
    # When the worker gave up (its line's time), not when its process was gone: the exit
    # itself takes a loaded machine's time.
    said = datetime.fromisoformat(line.split()[0]).timestamp()
    assert said - began < 1.0, "at once, not after the retry's pause"
    assert "Traceback" not in log.read_text()
    assert queue.counts("default")["reserved"] == 4, "left to expire, not lost"


def test_an_error_reply_from_redis_is_waited_out_in_one_line(
        redis_url: str, queue: RedisQueue, short_tmp) -> None:
    """A queue key of the wrong type (something else wrote it) makes every reserve an
    error reply (WRONGTYPE): the worker says so in one line and retries with backoff, as
    through an outage, instead of dying with a traceback; once the key is mended it runs
    the jobs."""
    ready = QueueKeys("default").ready
    queue.client.delete(ready)
    queue.client.set(ready, "not a list")
    log = short_tmp / "worker.log"
    with open(log, "w") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work",
             "--queue", "default", "--import", BASIC, "--sleep", "0.2"], stderr=err)
    try:
        wait_until(lambda: "Redis refused a call" in log.read_text(), timeout=15)
        assert worker.poll() is None, log.read_text()
        queue.client.delete(ready)
        for i in range(3):
            dispatch("tests.record", f"mended{i}")
        wait_until(lambda: len([r for r in results(queue)
                                if str(r.get("value", "")).startswith("mended")]) == 3,
                   timeout=30, message="the jobs queued once the key was mended")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    finally:
        _kill_if_running(worker)
    said = log.read_text()
    assert said.count("Redis refused a call") == 1 and "WRONGTYPE" in said, said
    assert "Redis accepts the calls again" in said and "Redis is back" not in said, said
    assert "Traceback" not in said, said


def test_a_queue_nothing_was_dispatched_to_shows_its_failed_jobs(
        redis_url: str, queue: RedisQueue) -> None:
    """A job written straight into a queue's keys (not dispatched: the queue is not in
    the index of queues yet) that fails shows in `failed list` without --queue: the
    worker indexes the queues it serves."""
    keys = QueueKeys("straight")
    queue.client.hset(keys.payloads, "s1",
                      '{"id":"s1","job":"no.such.job","queue":"straight"}')
    queue.client.rpush(keys.ready, "s1")
    queue.client.rpush(keys.notify, "1")
    out = run_worker(redis_url, "--stop-when-empty", queues="straight")
    assert out.returncode == 0, out.stderr
    listed = subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                             "failed", "list", "--json"], capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == ["s1"], listed.stdout


@pytest.mark.parametrize("prefetch", ["1", "16"])
def test_a_wrong_typed_done_records_key_neither_stops_the_worker_nor_loses_jobs(
        redis_url: str, queue: RedisQueue, prefetch: str) -> None:
    """The done records' hash of the wrong type makes every ack that keeps a record an
    error reply, also the replies read after a reserve sent ahead (fetch-ahead), which
    ended `work` with a traceback: now every job still runs, in one piece of output
    without a traceback."""
    for i in range(20):
        dispatch("tests.record", f"typed{i}")
    queue.client.set(QueueKeys("default").recent_records, "not a hash")
    out = run_worker(redis_url, "--stop-when-empty", "--prefetch", prefetch)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    ran = sorted(r["value"] for r in results(queue) if str(r.get("value")).startswith("typed"))
    assert ran == sorted(f"typed{i}" for i in range(20)), ran
