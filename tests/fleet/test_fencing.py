"""A dead master's unreported reservations, and a stalled master's fence, with real
masters on one Redis: jobs run elsewhere with their attempts unchanged, exactly once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import redis

from supervisor_q.fleet.registry import inflight_key
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.keys import QueueKeys
from tests import workers
from tests.helpers import gone, wait_until
from tests.masters import Master

pytestmark = pytest.mark.slow

LEASE = 6.0
ENV = {"SUPERVISOR_Q_FLEET_LEASE": str(LEASE)}


def program(numprocs: int, prefetch: int = 1) -> str:
    return f"""\
queues: [fenceq]
import: [tests.jobmods.fleetjobs]
numprocs: {numprocs}
prefetch: {prefetch}
tries: 1
timeout: 60
startsecs: 0.2
"""




def test_a_dead_masters_prefetched_job_runs_elsewhere_without_spending_an_attempt(
        short_tmp: Path, redis_url: str) -> None:
    """The prefetched job was reserved by the dead master's child but never reported to
    it (not in its in-flight list): the claim hands it back too, long before its
    reservation (60 s + margin) would expire."""
    long_id = dispatch("fleet.steps", "long", 300, queue="fenceq")
    dispatch("fleet.steps", "next", 0, queue="fenceq")
    (short_tmp / "a").mkdir()
    (short_tmp / "b").mkdir()
    with Master(short_tmp / "a", redis_url, {"p": program(1, prefetch=2)},
                extra_env=ENV) as victim:
        wait_until(lambda: workers.tagged(redis_url, "start", "long"),
                   message="the long job started")
        client = redis.Redis.from_url(redis_url)
        assert client.zcard(QueueKeys("fenceq").reserved) == 2  # "next" is prefetched
        # The long job is in the victim's heartbeat (reported); "next" never is.
        wait_until(lambda: any(long_id.encode() in (client.get(key) or b"")
                               for key in client.scan_iter(inflight_key("*"))),
                   timeout=10, message="the long job in the victim's in-flight list")
        with Master(short_tmp / "b", redis_url, {"p": program(2)}, extra_env=ENV) as other:
            other.wait_running("p", 2)
            killed_at = time.monotonic()
            os.kill(victim.proc.pid, signal.SIGKILL)
            [ran] = wait_until(lambda: workers.tagged(redis_url, "end", "next"), timeout=30,
                               interval=0.1, message="the prefetched job ran elsewhere")
            elapsed = time.monotonic() - killed_at
            assert ran["attempts"] == 1  # the dead host's attempt was given back
            assert ran["pid"] in other.pids("p")
            second = wait_until(lambda: workers.tagged(redis_url, "start", "long")[1:], timeout=5,
                                message="the reported job ran elsewhere too")
            assert second[0]["attempts"] == 1
            print(f"death -> prefetched job done elsewhere: {elapsed:.1f}s (lease {LEASE}s)")
            assert "1 unreported one(s) handed back" in other.tail(100_000)  # whole log: job lines
        client.close()


def test_a_stalled_master_claimed_meanwhile_does_not_run_its_job_twice(
        short_tmp: Path, redis_url: str) -> None:
    """SIGSTOP a master and its child mid-job until the fleet claims it and the job ran to
    completion elsewhere; SIGCONT: the stale master fences itself (kills its child before
    the job could end), so the job ended exactly once, with its attempts unchanged."""
    (short_tmp / "a").mkdir()
    (short_tmp / "b").mkdir()
    with Master(short_tmp / "a", redis_url, {"p": program(1)}, extra_env=ENV) as one, \
            Master(short_tmp / "b", redis_url, {"p": program(1)}, extra_env=ENV) as two:
        one.wait_running("p", 1)
        two.wait_running("p", 1)
        dispatch("fleet.steps", "s", 40, queue="fenceq")  # 4 s of work
        [first] = wait_until(lambda: workers.tagged(redis_url, "start", "s"), message="job started")
        victim, other = (one, two) if first["pid"] in one.pids("p") else (two, one)
        stalled = [psutil.Process(victim.proc.pid), psutil.Process(first["pid"])]
        for proc in stalled:
            proc.send_signal(signal.SIGSTOP)
        try:
            [done] = wait_until(lambda: workers.tagged(redis_url, "end", "s"), timeout=20,
                                interval=0.1, message="the job ran to completion elsewhere")
        finally:
            for proc in stalled:
                proc.send_signal(signal.SIGCONT)
        assert done["pid"] in other.pids("p") and done["attempts"] == 1
        wait_until(lambda: "was declared dead by another" in victim.tail(80), timeout=10,
                   message="the stale master noticed its fence")
        wait_until(lambda: gone(first["pid"]), timeout=5,
            message="the stale child was killed")
        assert len(workers.tagged(redis_url, "end", "s")) == 1
        assert [r["attempts"] for r in workers.tagged(redis_url, "start", "s")] == [1, 1]
        victim.wait_running("p", 1)  # it rejoined under a new id with a fresh child
