"""Jobs for the fleet tests: each run records its start (with its attempts) and end."""

from __future__ import annotations

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
