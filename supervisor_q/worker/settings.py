"""A worker's settings, built from a program (master/spawn.py) or `supervisor-q work`
flags (cli/jobs.py). Imports nothing from the package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSettings:
    """One worker's settings: a program's, or `supervisor-q work` flags."""

    queues: tuple[str, ...]
    imports: tuple[str, ...] = ()
    setup: str | None = None  # module:function called before the imports (boot.py)
    tries: int = 1
    backoff: tuple[int, ...] = (0,)
    timeout: float = 60.0
    sleep: float = 3.0
    rest: float = 0.0
    max_jobs: int = 0
    max_time: float = 0.0
    memory: int = 128  # MB, 0 = off
    once: bool = False
    stop_when_empty: bool = False
    prefetch: int = 1
    label: str = "worker"  # for titles and logs: "emails#3"
    keep_jobs: float = 3600.0  # seconds a done job stays findable (0 = not kept)
    keep_jobs_max: int = 10_000  # most done jobs kept per queue
    log_jobs: bool = True  # a line at each job's start and end (joblog.py)
    jitter: float = 0.1  # fraction of max_jobs/max_time, so a pool does not recycle at once

