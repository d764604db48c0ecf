"""Hostile input as a user (or an attacker with Redis access) could push it, following
the README's Redis layout: any bytes in any field end in the failed store with a reason,
the worker lives on, the next good job runs, and ids of any shape keep their deadline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.worker.report import PipeReporter, parse_lines
from tests.helpers import gone, wait_until
from tests.masters import Master, results

HEAD = b'{"v":1,"timeout":null,"id":"x","queue":"default",'
DEEP = b"[" * 10_000 + b"]" * 10_000

# (id, payload, words the failed record's reason must contain)
HOSTILE: list[tuple[bytes, bytes, str]] = [
    (b"bad-utf8-payload", HEAD + b'"job":"tests.record","args":["\xff\xfe"]}', "not UTF-8"),
    (b"\xff\xfe bad-utf8 id", b"not json", "not valid JSON"),
    (b"deep-array", DEEP, "nested too deeply"),
    (b"deep-args", HEAD + b'"job":"tests.record","args":[' + DEEP + b"]}", "nested too deeply"),
    (b"not-an-object", b'"just a string"', "not a JSON object"),
    (b"nan-timeout", b'{"v":1,"timeout":NaN,"id":"x","job":"tests.record","queue":"default"}',
     "not valid JSON"),
    (b"inf-arg", HEAD + b'"job":"tests.record","args":[1e400]}', "number out of range"),
    (b"long-int", HEAD + b'"job":"tests.record","args":[' + b"9" * 5000 + b"]}",
     "payload is not valid JSON: integer too long"),
    (b"tries-negative", HEAD + b'"job":"tests.record","tries":-1}', "'tries' must be"),
    (b"max-exceptions-negative", HEAD + b'"job":"tests.record","max_exceptions":-1}',
     "'max_exceptions' must be"),
    (b"bad-backoff", HEAD + b'"job":"tests.boom","tries":3,"backoff":["soon"]}', "backoff"),
    (b"bad-dispatched-at", HEAD + b'"job":"tests.record","dispatched_at":"yesterday"}',
     "dispatched_at"),
    (b"huge-name", HEAD + b'"job":"' + b"a" * 3_000_000 + b'"}', "unknown job"),
    (b"i" * 5000, HEAD + b'"job":"tests.record"}', "job id is longer than"),
    # a chain or batch id not of the shape chains.py and batches.py write: refused before
    # the job runs (not met after it, as a traceback), on the general and the short path
    (b"chain-of-junk", HEAD + b'"job":"tests.record","extra":{"chain":[1,null,"x"]}}',
     "'extra.chain' step 1 must be a job signature"),
    (b"chain-bad-step", b'{"id":"x","queue":"default","job":"tests.record","extra":{"chain":'
     b'[{"job":"tests.record","args":"notalist","kwargs":[],"queue":5,"delay":"x"}]}}',
     "'extra.chain' step 1 must be a job signature"),
    (b"chain-not-a-list", HEAD + b'"job":"tests.record","extra":{"chain":"abc"}}',
     "'extra.chain' must be a list"),
    (b"batch-id-list", HEAD + b'"job":"tests.record","extra":{"batch":[1]}}', "'extra.batch'"),
    (b"batch-id-int", b'{"id":"x","queue":"default","job":"tests.record","extra":{"batch":12}}',
     "'extra.batch' must be a batch id"),
]


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def push_raw(client: redis.Redis, job_id: bytes, payload: bytes, queue: str = "default") -> None:
    """Queue raw bytes the way the README documents the layout."""
    pipe = client.pipeline(transaction=True)
    pipe.hset(f"sq:{{{queue}}}:payloads", job_id, payload)
    pipe.rpush(f"sq:{{{queue}}}:ready", job_id)
    pipe.rpush(f"sq:{{{queue}}}:notify", "1")
    pipe.execute()


def raw_failed(client: redis.Redis) -> dict[bytes, dict]:
    """The failed store as bytes id -> record, read past supervisor-q's own code."""
    return {k: json.loads(v) for k, v in client.hgetall("sq:{default}:failed_records").items()}


def cli(redis_url: str, *args: str | bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                           *args], capture_output=True, timeout=60)


def test_hostile_payloads_are_failed_and_the_worker_goes_on(redis_db, redis_url: str,
                                                            queue: RedisQueue) -> None:
    client = redis_db.client()
    for job_id, payload, _ in HOSTILE:
        push_raw(client, job_id, payload)
    good = [dispatch("tests.record", i) for i in range(5)]
    done = cli(redis_url, "work", "--queue", "default", "--import", "tests.jobmods.basic",
               "--stop-when-empty")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    assert b"Traceback" not in done.stderr
    assert sorted(r["value"] for r in results(client)) == list(range(5))
    assert sorted(r["id"] for r in results(client)) == sorted(good)
    failed = raw_failed(client)
    assert set(failed) == {job_id for job_id, _, _ in HOSTILE}
    for job_id, _, words in HOSTILE:
        assert words in failed[job_id]["reason"], (job_id[:40], failed[job_id]["reason"])
        assert len(failed[job_id]["reason"]) < 2000, "reasons stay bounded"
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 0,
                                       "failed": len(HOSTILE)}


def test_ids_with_spaces_newlines_and_any_bytes_run_as_any_other(redis_db, redis_url: str,
                                                                 queue: RedisQueue) -> None:
    client = redis_db.client()
    ids = [b"a b\nc", b"\xff\xfe\x00id", b"tab\there\r\n"]
    for job_id in ids:
        push_raw(client, job_id, HEAD.replace(b'"x"', b'"y"') + b'"job":"tests.record"}')
    done = cli(redis_url, "work", "--queue", "default", "--import", "tests.jobmods.basic",
               "--stop-when-empty")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    ran = [r["id"].encode("utf-8", "surrogateescape") for r in results(client)]
    assert ran == ids, "current_job().id is the stored id, byte for byte"
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 0, "failed": 0}


def test_failed_commands_list_retry_and_forget_ids_that_are_not_utf8(
        redis_db, redis_url: str, queue: RedisQueue) -> None:
    client = redis_db.client()
    dispatch("tests.record", "marks the queue known")
    client.delete("results")
    odd, other = b"\xff\xfe odd\nid", b"\xc3\x28 other"
    push_raw(client, odd, b"\x80 not json either")
    push_raw(client, other, b"[1]")
    cli(redis_url, "work", "--queue", "default", "--import", "tests.jobmods.basic",
        "--stop-when-empty")
    assert set(raw_failed(client)) == {odd, other}

    listed = cli(redis_url, "failed", "list")
    assert listed.returncode == 0, listed.stderr
    text = listed.stdout.decode("utf-8")  # strict: the listing is valid UTF-8
    assert "\\xff\\xfe odd\\nid" in text and "\\xc3( other" in text
    assert len(text.splitlines()) == 2, "one line per job, even with a newline in the id"
    as_json = cli(redis_url, "failed", "list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    entries = json.loads(as_json.stdout.decode("utf-8"))
    shown = {e["id"] for e in entries}
    assert shown == {"\\xff\\xfe odd\nid", "\\xc3( other"}
    assert all("not valid JSON" in e["reason"] or "not a JSON object" in e["reason"]
               for e in entries)

    # retry by the id as `failed list` shows it: the stored bytes go back to the queue
    retried = cli(redis_url, "failed", "retry", "\\xff\\xfe odd\nid")
    assert retried.returncode == 0, retried.stderr
    assert client.lrange("sq:{default}:ready", 0, -1) == [odd]
    assert client.hget("sq:{default}:payloads", odd) == b"\x80 not json either"
    # forget by the raw bytes, as a shell passes them
    forgot = cli(redis_url, "failed", "forget", other)
    assert forgot.returncode == 0, forgot.stderr
    assert raw_failed(client) == {}


def test_dispatch_of_deeply_nested_arguments_raises_the_serialisation_error(
        redis_url: str, queue: RedisQueue) -> None:
    nested: list = []
    for _ in range(10_000):
        nested = [nested]
    with pytest.raises(payloads.NotSerialisable, match="nested too deeply"):
        dispatch("tests.record", nested)
    with pytest.raises(payloads.NotSerialisable):
        tests.jobmods.basic.record_job.dispatch(value={"a": nested})
    assert queue.size("default") == 0


def test_report_lines_carry_any_id_and_unreadable_lines_are_never_dropped() -> None:
    read_fd, write_fd = os.pipe()
    reporter = PipeReporter(write_fd)
    odd = "a b\nc\udcff\udcfe"
    reporter.job_started(odd, "tests.record", "default", 7.5, 2)
    reporter.job_finished(odd)
    events, rest = parse_lines(os.read(read_fd, 65536) + b'S ["cut\nE\nX y\n')
    assert rest == b""
    started, finished, *garbled = events
    assert (started.kind, started.job_id, started.timeout, started.attempts) == \
        ("started", odd, 7.5, 2)
    assert (finished.kind, finished.job_id) == ("finished", odd)
    assert [(g.kind, g.line[:1]) for g in garbled] == \
        [("garbled", b"S"), ("garbled", b"E"), ("garbled", b"X")]


WORKER = """\
queues: [default]
import: [tests.jobmods.basic, tests.jobmods.hostile]
numprocs: {n}
startsecs: 0.2
timeout: {timeout}
"""


@pytest.fixture
def master(short_tmp: Path, redis_url: str):
    started: list[Master] = []

    def make(programs: dict[str, str]) -> Master:
        m = Master(short_tmp, redis_url, programs)
        started.append(m)
        return m.start()

    yield make
    for m in started:
        m.stop()


def test_hostile_payloads_queued_before_start_never_take_the_pool_down(
        master, redis_db, queue: RedisQueue) -> None:
    client = redis_db.client()
    for job_id, payload, _ in HOSTILE[:8]:
        push_raw(client, job_id, payload)
    good = [dispatch("tests.record", i) for i in range(20)]
    m = master({"w": WORKER.format(n=2, timeout=30)})
    states: set[str] = set()

    def all_done() -> bool:
        states.add(m.program("w")["state"])
        return len(results(client)) >= 20 and len(raw_failed(client)) >= 8
    wait_until(all_done, timeout=30, message=f"every job settled; log: {m.tail()}")
    # The jobs may all be done within startsecs: wait for RUNNING rather than assume it.
    wait_until(lambda: all_done() and m.program("w")["state"] == "running", timeout=10,
               message=f"the pool reaches RUNNING; states seen {states}")
    assert "fatal" not in states, states
    assert sorted(r["id"] for r in results(client)) == sorted(good)
    failed = raw_failed(client)
    assert set(failed) == {job_id for job_id, _, _ in HOSTILE[:8]}
    assert all(failed[job_id]["reason"] for job_id in failed)
    log = m.tail(400)
    assert log.count("-> starting") == 2, "no child was replaced because of a payload"
    assert len(m.wait_running("w", 2)) == 2


def test_job_with_space_and_newline_in_its_id_stuck_in_c_is_killed_after_its_timeout(
        master, redis_url: str, queue: RedisQueue) -> None:
    m = master({"w": WORKER.format(n=1, timeout=30)})
    [pid] = m.wait_running("w", 1)
    job_id = "stuck job\nwith newline"
    # 4 s: room for the `status` subprocess below on a loaded machine, before the kill
    built = payloads.build("tests.stuck_in_c", "default", [], {}, timeout=4.0, job_id=job_id)
    queue.push("default", job_id, payloads.encode(built))
    wait_until(lambda: results(queue.client), timeout=10, message="the job started")
    started = results(queue.client)[0]["at"]

    def shown_job() -> dict | None:  # the master learns of the start from the child's report
        status = cli(redis_url, "--socket", str(m.socket), "status", "--json")
        assert status.returncode == 0, status.stderr
        [proc] = json.loads(status.stdout)["programs"][0]["processes"]
        return proc["job"]

    assert wait_until(shown_job, timeout=3, message="status shows the job")["id"] == job_id
    wait_until(lambda: queue.failed_records(), timeout=10, message="the master killed it")
    [record] = queue.failed_records()
    assert record["id"] == job_id and record["reason"].startswith("timeout")
    assert record["failed_at"] - started < 4 + 2, "killed soon after its 4 s timeout"
    assert gone(pid)


def test_unreadable_start_report_keeps_the_program_timeout_as_deadline(
        master, queue: RedisQueue) -> None:
    m = master({"w": WORKER.format(n=1, timeout=1)})
    [pid] = m.wait_running("w", 1)
    dispatch("tests.garbled_start_then_stuck")
    wait_until(lambda: results(queue.client), timeout=10, message="the job started")
    started = time.time()
    wait_until(lambda: gone(pid),
               timeout=10, message=f"the master killed the child; log: {m.tail()}")
    assert time.time() - started < 1 + 3, "killed soon after the program's 1 s timeout"
    assert "unreadable report" in m.tail(100_000)
    assert_report_pipe_not_inherited(m, queue)


def assert_report_pipe_not_inherited(m, queue: RedisQueue) -> None:  # noqa: ANN001
    """The replacement child runs a job whose subprocess looks for the report pipe."""
    m.wait_running("w", 1)
    dispatch("tests.report_pipe_in_subprocess")
    wait_until(lambda: len(results(queue.client)) == 2, timeout=10, message="it ran")
    found = results(queue.client)[1]
    assert found["pipe"].startswith("pipe:") and found["inherited"] is False, found


def test_garbage_on_the_report_pipe_keeps_the_known_job_and_its_deadline(
        master, queue: RedisQueue) -> None:
    """A job's 3 s deadline under a 30 s program: garbled "S"/"E" lines from the job
    neither loosen the deadline nor make the master forget the job it must settle; and
    the job's own subprocesses never inherit the report pipe."""
    m = master({"w": WORKER.format(n=1, timeout=30)})
    [pid] = m.wait_running("w", 1)
    built = payloads.build("tests.garbage_on_report_pipe_then_stuck", "default", [], {},
                           timeout=3.0)
    queue.push("default", built.id, payloads.encode(built))
    wait_until(lambda: results(queue.client), timeout=10, message="the job started")
    started = results(queue.client)[0]["at"]
    wait_until(lambda: queue.failed_records(), timeout=15,
               message=f"the master killed and settled the job; log: {m.tail()}")
    [record] = queue.failed_records()
    assert record["id"] == built.id and record["reason"].startswith("timeout"), record
    assert record["failed_at"] - started < 3 + 3, "killed soon after the job's 3 s timeout"
    assert "unreadable report" in m.tail(100_000)
    assert_report_pipe_not_inherited(m, queue)


def test_newlines_in_ids_and_job_names_cannot_forge_log_lines(
        master, redis_db, queue: RedisQueue) -> None:
    """Ids, job names and reasons from payloads are logged escaped, on their own line."""
    m = master({"w": WORKER.format(n=1, timeout=30)})
    m.wait_running("w", 1)
    stuck_id = "stuck\nFORGED by the id"
    built = payloads.build("tests.stuck_in_c", "default", [], {}, timeout=1.0,
                           job_id=stuck_id)
    queue.push("default", stuck_id, payloads.encode(built))
    push_raw(redis_db.client(), b"bad\nFORGED by a failed id",
             HEAD + b'"job":"no.such\\nFORGED by a name"}')
    wait_until(lambda: len(queue.failed_records()) == 2, timeout=20,
               message=f"both jobs failed; log: {m.tail()}")
    wait_until(lambda: "interrupted" in m.tail(400), timeout=10,
               message=f"the master logged the handback; log: {m.tail()}")
    log = m.tail(400)
    assert "stuck\\nFORGED by the id" in log, log
    assert not [line for line in log.splitlines() if line.startswith("FORGED")], log


def test_a_ready_id_without_a_payload_ends_in_the_failed_store(
        redis_db, redis_url: str, queue: RedisQueue) -> None:
    """An id in `ready` whose payload hash entry is missing is failed with "no payload",
    logged, and its `enqueued` entry cleared; the next job runs."""
    client = redis_db.client()
    push_raw(client, b"orphan", b"")
    client.hdel("sq:{default}:payloads", b"orphan")
    good = dispatch("tests.record", 1)
    done = cli(redis_url, "work", "--queue", "default", "--import", "tests.jobmods.basic",
               "--stop-when-empty")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    assert [r["id"] for r in results(client)] == [good]
    assert raw_failed(client)[b"orphan"]["reason"] == "no payload"
    assert b"job orphan failed: no payload" in done.stderr
    assert not client.hexists("sq:{default}:enqueued", b"orphan")
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 0, "failed": 1}
