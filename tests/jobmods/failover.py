"""A job for the failover tests: each run appends its number to a file of its worker
(SQ_RUN_LOG.<pid>, O_APPEND), so runs are counted even if Redis loses writes."""

from __future__ import annotations

import os
import time

from supervisor_q import job

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
