"""A master that finds itself claimed (stalled past its fleet lease): what it does to its
own children, with real masters on one Redis and real signals."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest
import redis

from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.keys import QueueKeys
from tests.helpers import wait_until
from tests.masters import Master

LEASE = 6.0
ENV = {"SUPERVISOR_Q_FLEET_LEASE": str(LEASE)}
WORKER = """\
queues: [fencedq]
import: [tests.jobmods.fleetjobs]
startsecs: 0.2
"""
PRELOADED = WORKER.replace("fencedq", "victimq") + "preload: true\n"
COMMAND = "command: python -c 'import time; time.sleep(600)'\nstartsecs: 0.2\n"


@pytest.mark.slow
def test_a_claimed_master_leaves_its_commands_running_and_forks_under_its_new_id(
        short_tmp: Path, redis_url: str) -> None:
    """Its command programs hold no jobs: untouched. Its worker children are killed and
    replaced, and the new ones (a preload zygote's too) reserve under the new fleet id."""
    (short_tmp / "a").mkdir()
    (short_tmp / "b").mkdir()
    with Master(short_tmp / "a", redis_url, {"w": PRELOADED, "cmd": COMMAND},
                extra_env=ENV) as victim, \
            Master(short_tmp / "b", redis_url, {"w": WORKER}, extra_env=ENV) as other:
        [command] = victim.wait_running("cmd", 1)
        [worker] = victim.wait_running("w", 1)
        other.wait_running("w", 1)
        stalled = psutil.Process(victim.proc.pid)
        stalled.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: "is gone (no heartbeat" in other.tail(200), timeout=20,
                       interval=0.2, message="the other master claimed the stalled one")
        finally:
            stalled.send_signal(signal.SIGCONT)
        wait_until(lambda: "was declared dead by another" in victim.tail(200), timeout=10,
                   message="the stalled master noticed its fence")
        # its worker's jobs belong to others now: that child is killed and replaced ...
        wait_until(lambda: worker not in victim.pids("w") and victim.pids("w"), timeout=10,
                   message="the worker child replaced")
        # ... but the command program holds no job: it keeps running, untouched
        assert victim.pids("cmd") == [command]
        assert psutil.Process(command).status() != psutil.STATUS_ZOMBIE
        killed = [line for line in victim.tail(400).splitlines()
                  if "cmd#" in line and "signal" in line]
        assert not killed, killed
        # the zygote's new children reserve under the master's new id, not its old one
        new_id = victim.status()["master"]["fleet_id"]
        job_id = dispatch("fleet.steps", "late", 100, queue="victimq")
        client = redis.Redis.from_url(redis_url)
        token = wait_until(lambda: client.hget(QueueKeys("victimq").holders, job_id),
                           timeout=10, message="the job reserved")
        assert token.decode().startswith(f"{new_id}|"), (token, new_id)
        client.close()
