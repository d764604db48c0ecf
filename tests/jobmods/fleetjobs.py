"""Jobs for the fleet tests: each run records its start (with its attempts) and end."""

from __future__ import annotations

import os
import time

from supervisor_q import job
from tests.jobmods.basic import record


@job(name="fleet.nap")
def nap(tag: str, seconds: float = 0.0) -> None:
    record(kind="start", value=tag)
    time.sleep(seconds)
    record(kind="end", value=tag)


@job(name="fleet.steps")
def steps(tag: str, steps: int = 0) -> None:
    """Works in 0.1 s steps: like CPU work, it makes no progress while stopped."""
    record(kind="start", value=tag)
    for _ in range(steps):
        time.sleep(0.1)
    record(kind="end", value=tag)


@job(name="fleet.marked")
def marked(path: str, steps: int = 0) -> None:
    """Appends `start|tick|end pid attempts monotonic-time [child pid]` lines to path (a
    tick every 0.1 s of work), with a `sleep` subprocess of its own running throughout."""
    import subprocess

    from supervisor_q import current_job

    ctx = current_job()
    attempts = ctx.attempts if ctx is not None else 0
    helper = subprocess.Popen(["sleep", "600"])

    def mark(kind: str, extra: str = "") -> None:
        with open(path, "a") as out:  # one short append per line: lines never interleave
            out.write(f"{kind} {os.getpid()} {attempts} {time.monotonic():.6f} {extra}\n")

    mark("start", str(helper.pid))
    for _ in range(steps):
        time.sleep(0.1)
        mark("tick")
    helper.kill()
    helper.wait()
    mark("end")
