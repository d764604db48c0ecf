"""Declared @job options hold however a job is dispatched: by name from a process that
never imported its module (Python or `supervisor-q dispatch`), as a bare payload, and
when the master fails it (timeout or memory_hard kill): callbacks run on their declared
queues and the app's `failing` events fire. tests.jobmods.declared must never be
imported by this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from supervisor_q.jobs.encryption import ENCRYPTION_ENV, generate_key
from supervisor_q.jobs.registry import Job, JobOptions, Registry, dispatch, job
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.keys import JOBS_KEY
from supervisor_q.workflows.batches import batch
from supervisor_q.workflows.chains import chain, signature
from tests.helpers import wait_until
from tests.masters import Master, results

DECLARED = "tests.jobmods.declared"


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def test_this_process_does_not_know_the_declared_jobs() -> None:
    assert DECLARED not in sys.modules


@contextmanager
def worker(redis_url: str, *flags: str, queues: str = "declq",
           env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A `supervisor-q work` importing the declared jobs, once it has published them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work", "--quiet",
         "--queue", queues, "--import", DECLARED, "--sleep", "0.2", *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    client = connect(redis_url)
    try:
        wait_until(lambda: client.hexists(JOBS_KEY, "declared.short") or proc.poll() is not None,
                   timeout=15, message="worker published its registry")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)
        client.close()


def cli(redis_url: str, *argv: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                           *argv], capture_output=True, text=True, timeout=30, env=env)


def stored(queue: RedisQueue, name: str) -> list[dict]:
    return [json.loads(raw) for raw in queue.client.hvals(queue.keys(name).payloads)]


def test_cli_dispatch_by_name_runs_with_the_declared_timeout_tries_and_queue(
        redis_url: str, queue: RedisQueue) -> None:
    with worker(redis_url, queues="declq,default"):  # the program's timeout is 60 s
        done = cli(redis_url, "dispatch", "declared.short", "--args", "[30]")
        assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
        wait_until(lambda: queue.failed_records(), timeout=10)
    [record] = queue.failed_records()
    assert record["queue"] == "declq"
    assert record["reason"].startswith("timeout: ran longer than 1s"), record["reason"]
    assert record["attempts"] == 1, "declared tries=1"
    assert [r["phase"] for r in results(queue.client) if r["kind"] == "short"] == ["start"]


def test_cli_dispatch_of_an_unregistered_name_warns_naming_the_queue(
        redis_url: str, queue: RedisQueue) -> None:
    done = cli(redis_url, "dispatch", "nobody.job", "--queue", "elsewhere")
    assert done.returncode == 0
    assert "warning: no worker has registered nobody.job" in done.stderr
    assert "'elsewhere'" in done.stderr
    assert queue.counts("elsewhere")["ready"] == 1
    done = cli(redis_url, "dispatch", "nobody.job")
    assert "'default'" in done.stderr and queue.counts("default")["ready"] == 1
    # refused (a delay past the cap): one line, no word of it being queued
    done = cli(redis_url, "dispatch", "nobody.job", "--delay", "1e308")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "delay must be" in done.stderr and "queued" not in done.stderr
    assert queue.counts("default")["ready"] == 1


def test_encrypted_job_by_name_is_encrypted_or_refused(redis_url: str,
                                                       queue: RedisQueue) -> None:
    with worker(redis_url, queues="other"):
        pass
    env = {k: v for k, v in os.environ.items() if k != ENCRYPTION_ENV}
    done = cli(redis_url, "dispatch", "declared.secret", "--args", '["hush-hush"]', env=env)
    assert done.returncode == 2, done.stderr
    assert "encrypted=True but no key" in done.stderr and "Traceback" not in done.stderr
    assert queue.counts("declq")["ready"] == 0, "refused: nothing stored in plain text"
    env[ENCRYPTION_ENV] = generate_key()
    done = cli(redis_url, "dispatch", "declared.secret", "--args", '["hush-hush"]', env=env)
    assert done.returncode == 0, done.stderr
    [body] = stored(queue, "declq")
    assert "hush-hush" not in json.dumps(body) and body["extra"].get("encrypted")


def test_python_dispatch_by_name_applies_declared_queue_and_unique(
        redis_url: str, queue: RedisQueue) -> None:
    with worker(redis_url, queues="other"):  # publishes, serves nothing of ours
        pass
    first = dispatch("declared.once", "a")
    assert first is not None and dispatch("declared.once", "b") is None, "unique_for holds"
    assert queue.counts("declq")["ready"] == 1 and queue.counts("default")["ready"] == 0
    [body] = stored(queue, "declq")
    assert body["id"] == first
    with pytest.raises(ValueError, match="unique id with a function"):
        dispatch("declared.once_by_key", "k")
    assert queue.counts("declq")["ready"] == 1


def test_worker_applies_declared_options_to_a_payload_that_lacks_them(
        redis_url: str, queue: RedisQueue) -> None:
    bare = payloads.build("declared.long", "declq", [2.5], {})  # an old or foreign producer
    queue.push("declq", bare.id, payloads.encode(bare))
    with worker(redis_url, "--timeout", "1"):
        wait_until(lambda: results(queue.client), timeout=10)
        seconds, micros = queue.client.time()
        now_ms = seconds * 1000 + micros // 1000
        deadline = queue.client.zscore(queue.keys("declq").reserved, bare.id)
        assert deadline is not None and deadline - now_ms > 10_000, \
            "reservation covers the declared timeout (8 s + margin), not the program's 1 s"
        wait_until(lambda: len(results(queue.client)) == 2, timeout=10)
    assert [r["phase"] for r in results(queue.client)] == ["start", "end"]
    assert queue.failed_records() == []


def test_declared_timeout_beats_the_program_default_for_a_bare_payload(
        redis_url: str, queue: RedisQueue) -> None:
    bare = payloads.build("declared.short", "declq", [30], {})
    queue.push("declq", bare.id, payloads.encode(bare))
    with worker(redis_url):  # program timeout 60 s, tries 1
        wait_until(lambda: queue.failed_records(), timeout=10)
    assert queue.failed_records()[0]["reason"].startswith("timeout: ran longer than 1s")


def test_retry_for_counts_from_dispatch(redis_url: str, queue: RedisQueue) -> None:
    with worker(redis_url, queues="other"):
        pass
    dispatch("declared.retry_for")  # tries=1, retry_for=600: raises twice, then succeeds
    [body] = stored(queue, "declq")
    assert body["retry_until"] == pytest.approx(body["dispatched_at"] + 600)
    with worker(redis_url):
        wait_until(lambda: len(results(queue.client)) == 3, timeout=15)
    assert queue.failed_records() == []


def test_callable_retry_until_is_evaluated_at_each_dispatch(redis_url: str,
                                                            queue: RedisQueue) -> None:
    calls: list[float] = []

    def deadline() -> float:
        calls.append(time.time())
        return calls[-1] + 600

    # The same job as the worker's, declared in this process with a callable.
    local = job(name="declared.retry_until_fn", queue="declq", tries=1,
                retry_until=deadline, registry=Registry())(lambda: None)
    local.dispatch()
    local.dispatch()
    assert len(calls) == 2, "evaluated per dispatch, not once at import"
    firsts = sorted(b["retry_until"] for b in stored(queue, "declq"))
    assert firsts == pytest.approx([c + 600 for c in calls])
    with worker(redis_url):
        wait_until(lambda: len(results(queue.client)) == 6, timeout=20)
    assert queue.failed_records() == []


def test_declared_retry_for_survives_the_round_trip() -> None:
    options = JobOptions(queue="q", tries=2, retry_for=30.0, unique_for=5.0)
    again = JobOptions.from_declared(json.loads(json.dumps(options.declared())))
    assert again == options
    assert Job(print, "x", again).payload([], {}).retry_until is not None


PROGRAM = (f"queues: [declq, catchq]\nimport: [{DECLARED}]\nstartsecs: 0.2\n"
           "numprocs: 1\n")


def dispatch_failing_flow(redis_url: str, first: str, *args: object) -> str:
    """A batch of one chain whose only job the master will have to kill."""
    wait_until(lambda: connect(redis_url).hexists(JOBS_KEY, first), timeout=15)
    flow = chain([signature(first, *args)],
                 catch="declared.chain_catch")
    handle = batch([flow], catch="declared.batch_catch",
                   finally_="declared.batch_finally").dispatch()
    return handle.id


def callbacks_ran_on_their_queues(queue: RedisQueue, job_name: str, why: str) -> None:
    def kinds() -> set[str]:
        return {r["kind"] for r in results(queue.client)}

    wanted = {"chain_catch", "batch_catch", "batch_finally", "failing"}
    wait_until(lambda: wanted <= kinds(), timeout=20, message="callbacks and failing event")
    found = results(queue.client)
    for kind in ("chain_catch", "batch_catch", "batch_finally"):
        [entry] = [r for r in found if r["kind"] == kind]
        assert entry["queue"] == "catchq", f"{kind} ran on its declared queue"
    [failing] = [r for r in found if r["kind"] == "failing"]
    assert failing["job"] == job_name and failing["reason"].startswith(why)
    assert failing["job_attempts"] == 1, "the attempt the master saw, not the settling job's"
    [record] = queue.failed_records()
    assert record["job"] == job_name and record["reason"].startswith(why)
    assert queue.counts("default")["ready"] == 0, "nothing stranded on default"


def test_timeout_kill_by_the_master_runs_callbacks_and_failing(
        short_tmp: Path, redis_url: str, queue: RedisQueue) -> None:
    with Master(short_tmp, redis_url, {"a": PROGRAM}) as master:
        master.wait_running("a", 1)
        dispatch_failing_flow(redis_url, "declared.hang")
        callbacks_ran_on_their_queues(queue, "declared.hang", "timeout")


def test_memory_hard_kill_by_the_master_runs_callbacks_and_failing(
        short_tmp: Path, redis_url: str, queue: RedisQueue) -> None:
    program = PROGRAM + "memory: 60\nmemory_hard: 100\n"
    with Master(short_tmp, redis_url, {"a": program}) as master:
        master.wait_running("a", 1)
        dispatch_failing_flow(redis_url, "declared.hog", 200)
        callbacks_ran_on_their_queues(queue, "declared.hog", "memory")


@pytest.mark.parametrize("bad", ["{x}", "a b", "a,b", "q\n"])
def test_a_queue_name_no_program_may_declare_is_refused_in_python(
        redis_url: str, bad: str) -> None:
    """The rule check-config applies to `queues:` holds for @job and dispatch too."""
    with pytest.raises(ValueError, match="bad queue name"):
        job(lambda: None, name="tests.badq", queue=bad, registry=Registry())
    with pytest.raises(ValueError, match="bad queue name"):
        dispatch("tests.record", queue=bad, connection=redis_url)
    assert RedisQueue(connect(redis_url)).client.keys("sq:*ready") == []


def test_retry_counts_a_worker_would_refuse_are_refused_at_declaration() -> None:
    """A worker refuses a payload with tries < 1 or max_exceptions < 0 (as malformed):
    @job refuses to declare them, so no job of such a declaration is ever queued."""
    for options in ({"tries": 0}, {"tries": -1}, {"max_exceptions": -1}):
        with pytest.raises(ValueError, match="tries must be >= 1 and max_exceptions >= 0"):
            job(lambda: None, name="tests.badcount", registry=Registry(), **options)
    job(lambda: None, name="tests.zeroexc", max_exceptions=0, registry=Registry())


@pytest.mark.parametrize("delay", [-1, 1e308, float("inf"), "5"])
def test_a_delay_dispatch_would_refuse_is_refused_at_declaration(delay: object) -> None:
    """@job(delay=...) takes what dispatch takes (seconds from 0 to 1e9), so a bad one is
    said once, where it is written, not at every dispatch."""
    with pytest.raises(ValueError, match="delay must be a number of seconds from 0 to"):
        job(lambda: None, name="tests.baddelay", delay=delay, registry=Registry())
