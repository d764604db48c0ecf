"""Sentinel URLs against a real deployment (1 primary, 1 replica, 3 sentinels on loopback),
and the URL parser's one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.sentinel import SentinelManagedConnection

from supervisor_q.jobs.registry import dispatch
from supervisor_q.paths import BadRedisUrl
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.connection import connect, parse_sentinel_url
from tests.helpers import wait_until
from tests.jobmods.failover import runs
from tests.masters import Master
from tests.sentinels import SentinelSet

JOB = "tests.failover.run"


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    with tempfile.TemporaryDirectory(prefix="sq-sentinel-") as tmp:
        deployment = SentinelSet(Path(tmp))
        try:
            deployment.start()
            yield deployment
        finally:
            deployment.stop()


@pytest.fixture
def queue(sentinels: SentinelSet) -> Iterator[RedisQueue]:
    found = RedisQueue(connect(sentinels.url))
    found.client.flushdb()
    yield found
    found.close()


def test_sentinel_url_parts() -> None:
    parsed = parse_sentinel_url(
        "rediss+sentinel://me:p%40ss@127.0.0.1:26379,[::1]:26380,localhost/svc/3"
        "?sentinel_password=s")
    assert parsed.sentinels == [("127.0.0.1", 26379), ("::1", 26380), ("localhost", 26379)]
    assert (parsed.service, parsed.db, parsed.username, parsed.password, parsed.tls) == (
        "svc", 3, "me", "p@ss", True)
    assert parsed.query == {"sentinel_password": "s"}


@pytest.mark.parametrize(("url", "says"), [
    ("redis+sentinel://127.0.0.1:26379", "/SERVICE"),
    ("redis+sentinel://127.0.0.1:26379/svc/x", "not a number"),
    ("redis+sentinel://127.0.0.1:99999/svc", "not a port"),
    ("redis+sentinel:///svc", "needs a host"),
    ("redis+sentinel://127.0.0.1:1/svc?colour=red", "unknown option"),
    ("redis://127.0.0.1:port/0", "bad Redis URL"),
])
def test_bad_url_is_one_line(url: str, says: str) -> None:
    with pytest.raises(BadRedisUrl) as caught:
        connect(url)
    message = str(caught.value)
    assert says in message and "\n" not in message and len(message) < 400


def test_bad_url_never_echoes_the_password() -> None:
    with pytest.raises(BadRedisUrl) as caught:
        connect("redis+sentinel://me:hunter2@127.0.0.1:1/")
    assert "hunter2" not in str(caught.value)


def test_cli_bad_sentinel_url_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "supervisor_q", "--redis-url", "redis+sentinel://h:1/a/b/c",
         "queue", "size", "default"], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "/SERVICE or /SERVICE/DB" in lines[0], done.stderr


@pytest.mark.slow
def test_sentinel_url_reaches_the_primary(sentinels: SentinelSet, queue: RedisQueue) -> None:
    queue.push("default", "a", "payload-a")
    (acked, result) = queue.reserve("default", default_timeout=10)
    assert [j.id for j in result.jobs] == ["a"]
    assert queue.ack("default", "a") == 1
    conn = queue._connection()
    assert isinstance(conn, SentinelManagedConnection)
    assert conn.port == sentinels.master_port()


@pytest.mark.slow
def test_hot_path_is_one_round_trip_per_job(sentinels: SentinelSet, queue: RedisQueue,
                                            tmp_path: Path) -> None:
    """A worker on a Sentinel URL drains pre-queued jobs with one command per job (the
    ack rides with the next reserve) on its kept connection to the primary."""
    count = 1000
    for n in range(count):
        queue.push("hot", f"j{n}", payloads.encode(payloads.build(JOB, "hot", [n], {})))
    primary = redis.Redis("127.0.0.1", sentinels.master_port())
    primary.config_resetstat()
    env = {**os.environ, "SQ_RUN_LOG": str(tmp_path / "runs")}
    worker = _worker(sentinels.url, "hot", env)
    try:
        wait_until(lambda: len(runs(str(tmp_path / "runs"))) >= count, timeout=20)
    finally:
        worker.terminate()
        worker.wait(10)
    stats = primary.info("commandstats")
    evalsha = stats["cmdstat_evalsha"]["calls"]
    assert evalsha <= count * 1.05 + 10, stats  # reserve+ack: one EVALSHA per job
    primary.close()


def _worker(url: str, queues: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", url, "work", "--queue", queues,
         "--import", "tests.jobmods.failover", "--sleep", "0.2", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_failover_mid_drain_loses_nothing(sentinels: SentinelSet, queue: RedisQueue,
                                          short_tmp: Path) -> None:
    """5,000 jobs, a master pool of 2 workers on the Sentinel URL; the primary is SIGKILLed
    mid-drain and restarted (as systemd would) once the sentinels promoted the replica."""
    count, workers = 5000, 2
    for n in range(count):
        queue.push("drain", f"j{n}", payloads.encode(payloads.build(JOB, "drain", [n], {})))
    # WAIT: the pushes reached the replica before the drain, as a producer would ensure with
    # min-replicas-to-write (README); otherwise an acknowledged push may die with the primary.
    assert queue.client.execute_command("WAIT", 1, 5000) >= 1
    log = str(short_tmp / "runs")
    program = ("queues: [drain]\nimport: [tests.jobmods.failover]\n"
               f"numprocs: {workers}\nstartsecs: 0.2\n")
    master = Master(short_tmp, sentinels.url, {"drain": program},
                    extra_env={"SQ_RUN_LOG": log, "SQ_RUN_SLEEP": "0.001"})
    with master:
        pids = master.wait_running("drain", workers)
        wait_until(lambda: len(runs(log)) >= count // 4, timeout=20)
        old = sentinels.master_port()
        old_node = sentinels.primary if sentinels.primary.port == old else sentinels.replica
        # Redis replicates asynchronously: acks a lagging replica never got run again once
        # it is promoted (README), and on a loaded machine the lag can be a whole resync.
        # This tests the workers, so the replica first takes every write: writes pause
        # (workers block mid-call, as at any crash) and WAIT sees the replica caught up.
        with old_node.client() as client:
            client.execute_command("CLIENT", "PAUSE", 30000, "WRITE")
            assert client.execute_command("WAIT", 1, 20000) >= 1, "the replica caught up"
        old_node.kill()
        killed_at = time.monotonic()
        at_kill = len(runs(log))
        sentinels.wait_failover(old, timeout=20)
        old_node.start()  # same config and data: it comes back, then is made a replica
        wait_until(lambda: len(runs(log)) > at_kill + 2 * workers, timeout=30)
        resumed = time.monotonic() - killed_at
        try:
            wait_until(lambda: len(set(runs(log))) >= count, timeout=60)
        except AssertionError:
            raise AssertionError(f"{len(set(runs(log)))} of {count} ran; {master.tail()}") from None
        assert master.pids("drain") == pids, "no worker died"
        assert master.program("drain")["state"] != "FATAL"
    done = runs(log)
    twice = {n: c for n, c in Counter(done).items() if c > 1}
    assert at_kill < count, "the kill came after the drain: nothing was tested"
    assert set(done) == set(range(count)), "0 lost"
    extra = sum(c - 1 for c in twice.values())
    assert extra <= workers, (
        f"{extra} duplicate runs of {len(twice)} jobs (numbers {min(twice)}..{max(twice)}), "
        f"{at_kill} runs at the kill; {master.tail()}")
    logged = master.log.read_text(errors="replace")
    assert "Traceback" not in logged, logged
    for pid in pids:  # one episode per worker: logged once, and once when it is back
        mine = [line for line in logged.splitlines() if f"[{pid}]" in line]
        assert sum("Redis unavailable" in line for line in mine) <= 1, logged
        assert sum("Redis is back" in line for line in mine) <= 1, logged
    print(f"failover: {at_kill} runs at the kill, sentinels moved in "
          f"{sentinels.failover_seconds:.1f}s, workers resumed {resumed:.1f}s after the kill, "
          f"duplicates {len(twice)}")


@pytest.mark.slow
def test_master_pool_on_a_sentinel_url(sentinels: SentinelSet, queue: RedisQueue,
                                       short_tmp: Path) -> None:
    """SUPERVISOR_Q_REDIS_URL (the master and its children) and connection= (dispatch)
    both take a Sentinel URL."""
    log = str(short_tmp / "runs")
    program = "queues: [viasentinel]\nimport: [tests.jobmods.failover]\nnumprocs: 1\n"
    with Master(short_tmp, sentinels.url, {"pool": program}, extra_env={"SQ_RUN_LOG": log}):
        dispatch(JOB, 11, queue="viasentinel", connection=sentinels.url)
        wait_until(lambda: runs(log) == [11], timeout=20, message="the job to run")


@pytest.mark.slow
def test_cli_on_a_sentinel_url(sentinels: SentinelSet, queue: RedisQueue) -> None:
    queue.push("cli", "c1", "payload")
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url",
                               sentinels.url, *args], capture_output=True, text=True,
                              timeout=30)
    size = cli("queue", "size", "cli")
    assert size.returncode == 0 and size.stdout.strip() == "1", size
    signalled = cli("restart-workers")
    assert signalled.returncode == 0, signalled.stderr
    assert queue.client.get("sq:restart") is not None


@pytest.mark.slow
def test_job_lookup_on_a_sentinel_url(sentinels: SentinelSet, queue: RedisQueue) -> None:
    from supervisor_q import job_status

    url = sentinels.url
    done = dispatch("look.ret", "s", queue="look", connection=url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", url, "work", "--queue", "look",
         "--import", "tests.jobmods.lookupjobs", "--sleep", "0.2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (s := job_status(done, connection=url)) is not None
                   and s.state == "done", timeout=15)
    finally:
        worker.terminate()
        worker.wait(10)
    assert job_status(done, connection=url).result == {"got": "s"}
    shown = subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", url, "job",
                            done, "--json"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and json.loads(shown.stdout)["result"] == {"got": "s"}


def test_hot_path_reads_readonly_from_a_demoted_primary_as_a_lost_connection(
        sentinels: SentinelSet, queue: RedisQueue) -> None:
    """The hot connection's own reader (queue/wire.py) does what redis-py's
    SentinelManagedConnection does: READONLY from the node it took for the primary (one
    demoted by a failover) disconnects and raises ConnectionError, so the retry asks the
    sentinels for the new primary instead of failing the call."""
    from supervisor_q.queue.wire import pack_args, read, send

    primary = sentinels.master_port()
    replica = next(n.port for n in (sentinels.primary, sentinels.replica) if n.port != primary)
    # An earlier test's failover may have left the old primary not yet turned replica.
    node = redis.Redis(host="127.0.0.1", port=replica)
    wait_until(lambda: node.role()[0] in (b"slave", "slave"), timeout=30,
               message=f"port {replica} a replica")
    node.close()
    conn = queue.client.connection_pool.make_connection()
    assert isinstance(conn, SentinelManagedConnection)
    conn.connect_to(("127.0.0.1", replica))  # as if the primary had been demoted
    send(conn, b"*3\r\n" + pack_args(["SET", "sq:wire:readonly", "1"]), False)
    with pytest.raises(redis.ConnectionError, match="previous master"):
        read(conn)
    assert conn._sock is None
