"""A Redis outage longer than the fleet lease, shared by every master, is not a death
(but the lease fence stops the jobs running through it: they run again, attempts
unchanged); and a stalled master's idle child takes no job once its lease ran out. Real
masters, a real server killed with SIGKILL and restarted on the same socket and data."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import redis

from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.server import RedisServer
from tests import workers
from tests.helpers import wait_until
from tests.masters import Master

pytestmark = pytest.mark.slow

LEASE = 6.0
ENV = {"SUPERVISOR_Q_FLEET_LEASE": str(LEASE)}


def program(queue: str) -> str:
    return f"""\
queues: [{queue}]
import: [tests.jobmods.fleetjobs]
numprocs: 1
tries: 3
timeout: 60
startsecs: 0.2
"""




def test_a_redis_outage_longer_than_the_lease_declares_no_master_dead(
        short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two masters, a job running; the server is SIGKILLed for longer than the lease and
    restarted from its data: nobody is claimed. No master could renew its lease, so the
    running job was stopped by the fence (worker/fence.py) and, once Redis is back, its
    master hands it back with its attempt given back: it ends once with attempts 1."""
    server = RedisServer(data_dir=short_tmp / "redis", persistent=True)
    server.start()
    url = server.url
    monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", url)
    client = redis.Redis.from_url(url)
    client.config_set("appendfsync", "always")  # the SIGKILL below loses no write
    (short_tmp / "a").mkdir()
    (short_tmp / "b").mkdir()
    try:
        with Master(short_tmp / "a", url, {"p": program("outq")}, extra_env=ENV) as one, \
                Master(short_tmp / "b", url, {"p": program("outq")}, extra_env=ENV) as two:
            one.wait_running("p", 1)
            two.wait_running("p", 1)
            dispatch("fleet.steps", "long", 150, queue="outq")  # 15 s of work
            wait_until(lambda: workers.tagged(url, "start", "long"), message="the job started")
            server.kill()
            time.sleep(LEASE + 2)  # the outage itself: longer than the lease
            server.start()
            [done] = wait_until(lambda: workers.tagged(url, "end", "long"), timeout=20,
                                interval=0.2, message="the job ended")
            logs = one.tail(200) + two.tail(200)
            assert "declared dead" not in logs and "is gone" not in logs, logs
            assert "fenced: 1 job(s) it held handed back" in logs, logs
            assert [r["attempts"] for r in workers.tagged(url, "start", "long")] == [1, 1]
            assert done["attempts"] == 1
            assert len(workers.tagged(url, "end", "long")) == 1
    finally:
        client.close()
        server.stop()


def test_a_stalled_masters_idle_child_takes_no_job_once_its_lease_ran_out(
        short_tmp: Path, redis_url: str) -> None:
    """SIGSTOP a master (not its idle child) until another claims it: the child, its
    lease run out, shows `fenced` and takes no job dispatched then. SIGCONT: the master
    fences itself, rejoins with a fresh child, which runs the job once, attempts 1."""
    (short_tmp / "a").mkdir()
    (short_tmp / "b").mkdir()
    with Master(short_tmp / "a", redis_url, {"p": program("fenceq")}, extra_env=ENV) as victim, \
            Master(short_tmp / "b", redis_url, {"p": program("idleq")}, extra_env=ENV) as other:
        [child] = victim.wait_running("p", 1)
        other.wait_running("p", 1)
        master = psutil.Process(victim.proc.pid)
        master.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: "fenced" in " ".join(psutil.Process(child).cmdline()),
                       timeout=15, message="the child's title shows its lease ran out")
            wait_until(lambda: "is gone" in other.tail(100_000), timeout=25,
                       message="the stopped master was claimed")
            dispatch("fleet.steps", "late", 10, queue="fenceq")
            time.sleep(1.0)  # nothing to poll for: a window in which a wrong reserve would land
        finally:
            master.send_signal(signal.SIGCONT)
        wait_until(lambda: "was declared dead by another" in victim.tail(200), timeout=10,
                   message="the stalled master noticed it was claimed")
        [done] = wait_until(lambda: workers.tagged(redis_url, "end", "late"), timeout=20,
                            interval=0.2, message="the job ran on the rejoined master")
        assert done["attempts"] == 1 and done["pid"] != child and done["pid"] != os.getpid()
        assert [r["pid"] for r in workers.tagged(redis_url, "start", "late")] == [done["pid"]]
        assert "FATAL" not in victim.tail(100_000)
