"""The worker's hot path without its extra system calls: the pid cached per process
(and right after a fork), the kept connection's timeout in the kernel (blocking socket,
still timed out), and a finished job's report held back for the next start, never
past a wait (issue 15)."""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import pytest
import redis

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
import tests.jobmods.hotpath  # noqa: F401
from supervisor_q import procid
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.worker.report import PipeReporter, parse_lines
from tests.helpers import wait_until
from tests.masters import Master, results


def test_the_cached_pid_is_each_process_own_after_fork() -> None:
    assert procid.pid() == os.getpid()
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report its cached pid against the kernel's
        os.write(write_fd, f"{procid.pid()} {os.getpid()}".encode())
        os._exit(0)
    os.close(write_fd)
    cached, real = os.read(read_fd, 100).decode().split()
    os.waitpid(child, 0)
    os.close(read_fd)
    assert cached == real == str(child)
    assert procid.pid() == os.getpid() != child


def test_the_hot_connection_blocks_in_the_kernel_and_still_times_out(
        redis_url: str) -> None:
    """No Python-level timeout (which polls before every send and recv) on the kept
    connection, the same timeout as SO_RCVTIMEO/SO_SNDTIMEO; a server that stops
    answering still ends the call after that timeout, as a connection error."""
    queue = RedisQueue(connect(redis_url, socket_timeout=0.5))
    queue.reserve("default", default_timeout=5)
    sock = queue._conn._sock  # the hot path's own connection (hotpath.py)
    assert sock.gettimeout() is None
    want = struct.pack("@ll", 0, 500_000)
    for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        assert sock.getsockopt(socket.SOL_SOCKET, option, len(want)) == want
    other = redis.Redis.from_url(redis_url)
    other.execute_command("CLIENT", "PAUSE", 1500, "ALL")
    started = time.monotonic()
    try:
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            queue.reserve("default", default_timeout=5)
        took = time.monotonic() - started
        assert 0.4 < took < 1.4, took
    finally:
        other.execute_command("CLIENT", "UNPAUSE")
        other.close()
    assert queue.reserve("default", default_timeout=5)[1].jobs == []  # reconnects
    queue.close()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


def test_a_finish_rides_with_the_next_start_only_far_from_its_deadline() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    reporter = PipeReporter(write_fd)
    reporter.job_started("a", "tests.noop", "default", 60.0, 1)
    assert [e.kind for e in parse_lines(_read(read_fd))[0]] == ["started"]
    reporter.job_finished("a")  # not held without hold_finishes
    assert [e.kind for e in parse_lines(_read(read_fd))[0]] == ["finished"]
    reporter.hold_finishes(10.0)
    reporter.job_started("b", "tests.noop", "default", 60.0, 1)
    _read(read_fd)
    reporter.job_finished("b")
    assert _read(read_fd) == b"", "held: 60 s from its deadline, margin 10 s"
    reporter.job_started("c", "tests.noop", "default", 5.0, 1)
    events, rest = parse_lines(_read(read_fd))  # one write: b's finish, then c's start
    assert [(e.kind, e.job_id) for e in events] == [("finished", "b"), ("started", "c")]
    assert rest == b"" and events[0].at < events[1].at
    reporter.job_finished("c")  # 5 s from its deadline: inside the margin, written now
    assert [(e.kind, e.job_id) for e in parse_lines(_read(read_fd))[0]] == [("finished", "c")]
    reporter.job_started("d", "tests.noop", "default", 0.0, 1)  # no deadline: held
    _read(read_fd)
    reporter.job_finished("d", "released")
    assert _read(read_fd) == b""
    reporter.flush()
    [event] = parse_lines(_read(read_fd))[0]
    assert (event.kind, event.job_id, event.outcome) == ("finished", "d", "released")
    reporter.flush()
    assert _read(read_fd) == b"", "nothing held: nothing written"
    os.close(read_fd)
    os.close(write_fd)


WORKER = """\
queues: [default]
import: [tests.jobmods.basic, tests.jobmods.hotpath]
numprocs: 1
startsecs: 0.2
timeout: 120
"""


def _idle_after_one(m: Master) -> bool:
    child = m.program("w")["processes"][0]
    return child["job"] is None and child["jobs_done"] == 1


def test_the_master_sees_a_held_finish_once_the_child_waits(
        short_tmp: Path, redis_url: str) -> None:
    """A job far from its deadline has its finish held for the next start; when the
    queue is empty the child writes it before it blocks: the master shows the child
    idle and counts the job done, without another job coming."""
    queue = RedisQueue(connect(redis_url))
    with Master(short_tmp, redis_url, {"w": WORKER}) as m:
        m.wait_running("w", 1)
        built = payloads.build("tests.record", "default", [1], {})
        queue.push("default", built.id, payloads.encode(built))
        wait_until(lambda: results(queue.client), timeout=10, message="the job ran")
        # At once (the wait begins a few ms after the job): well before the worker's
        # once-a-second checks, which flush a held finish too.
        wait_until(lambda: _idle_after_one(m), timeout=0.8,
                   message="the master saw the job finish")
    queue.close()


def test_a_child_killed_with_its_finish_held_settles_the_job_once(
        short_tmp: Path, redis_url: str) -> None:
    """SIGKILL of a child whose finish is held (its ack waits on a paused server): the
    master hands the job back as it would any job of a dead child, once the server
    answers: the job is neither lost nor left reserved nor run again here, and the next
    job runs."""
    queue = RedisQueue(connect(redis_url))
    with Master(short_tmp, redis_url, {"w": WORKER}) as m:
        [pid] = m.wait_running("w", 1)
        built = payloads.build("tests.record_then_pause_writes", "default", [1500], {})
        queue.push("default", built.id, payloads.encode(built))
        wait_until(lambda: results(queue.client), timeout=10, message="the job ran")
        time.sleep(0.2)  # the child is in its ack + reserve, which the pause holds
        assert m.program("w")["processes"][0]["job"]["id"] == built.id, "finish held"
        os.kill(pid, 9)
        wait_until(lambda: not queue.client.zcard("sq:{default}:reserved")
                   and not queue.client.llen("sq:{default}:ready"), timeout=15,
                   message=f"the job settled; log: {m.tail()}")
        # Its ack never landed (the connection died with it unsent): the job is not done,
        # and the master settled it as the job of a dead child (tries 1: failed; with
        # tries left it would be released and run once more), not after its
        # reservation's expiry two minutes on.
        [record] = queue.failed_records()
        assert record["id"] == built.id and "killed by signal 9" in record["reason"], record
        assert [r["id"] for r in results(queue.client)] == [built.id], "ran once"
        nxt = payloads.build("tests.record", "default", ["next"], {})
        queue.push("default", nxt.id, payloads.encode(nxt))
        wait_until(lambda: len(results(queue.client)) == 2, timeout=10,
                   message="the next job ran")
    queue.close()


def test_a_plain_jobs_done_record_is_what_the_general_path_writes() -> None:
    """done_entry writes the record of a job without chain, batch or kept result
    directly; it must be byte for byte the general path's json.dumps of the same fields."""
    import dataclasses
    import json

    from supervisor_q.queue import payload as payloads
    from supervisor_q.queue.backend import Reserved
    from supervisor_q.worker import jobrecord

    built = payloads.build("app.caf\u00e9\n\udcff", "q", [], {})
    decoded = payloads.decode(payloads.encode(built))
    job = Reserved("q", decoded.id, payloads.encode(built), 3, 0, 0.0)
    fast = jobrecord.done_entry(job, decoded, 1_700_000_000.125, None, 60, None)
    general = jobrecord.done_entry(job, dataclasses.replace(decoded, extra={"x": 1}),
                                   1_700_000_000.125, None, 60, None)
    assert isinstance(fast, jobrecord.Done) and isinstance(general, jobrecord.Done)
    assert fast.keep_ms == general.keep_ms == 60_000
    body = json.loads(fast.record)
    body["ended_at"] = json.loads(general.record)["ended_at"]
    assert json.dumps(body, separators=(",", ":")) == general.record
    assert list(json.loads(fast.record)) == list(json.loads(general.record))
