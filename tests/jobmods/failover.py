"""A job for the failover tests: each run appends its number to a file of its worker
(SQ_RUN_LOG.<pid>, O_APPEND), so runs are counted even if Redis loses writes."""

from __future__ import annotations

import os
import time

import redis

from supervisor_q import current_job, job
from supervisor_q.jobs.dispatching import queue_for

_fds: dict[int, int] = {}


@job(name="tests.failover.run")
def run(n: int) -> None:
    pid = os.getpid()
    fd = _fds.get(pid)
    if fd is None:
        fd = _fds[pid] = os.open(f"{os.environ['SQ_RUN_LOG']}.{pid}",
                                 os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{n}\n".encode())
    time.sleep(float(os.environ.get("SQ_RUN_SLEEP", "0")))


def runs(prefix: str) -> list[int]:
    """Every recorded run of every worker whose log starts with prefix."""
    base = os.path.basename(prefix)
    found: list[int] = []
    for name in os.listdir(os.path.dirname(prefix)):
        if name.startswith(base + "."):
            with open(os.path.join(os.path.dirname(prefix), name)) as f:
                found.extend(int(line) for line in f if line.strip())
    return found


@job(name="tests.failover.readonly_once")
def readonly_once(n: int) -> None:
    """Fails with READONLY (as middleware would on a demoted primary) on its first run."""
    client = queue_for().client
    client.rpush(f"attempts:{n}", current_job().attempts)
    if client.incr(f"readonly-once:{n}") == 1:
        raise redis.ReadOnlyError("You can't write against a read only replica.")
    run(n)
