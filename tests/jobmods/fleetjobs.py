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
