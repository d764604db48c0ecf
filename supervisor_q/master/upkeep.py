"""Once-a-second checks of the running pools that need psutil: `memory_hard`. The
arbiter calls them from its slow tick (`monitor:` thresholds moved to alerting.py).

Imports psutil; pools only through their methods.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from supervisor_q.master.pool import Pool

log = logging.getLogger("supervisor_q.arbiter")


def enforce_memory_hard(pools: Iterable[Pool]) -> None:
    """SIGKILL a child whose RSS passed its program's `memory_hard` in the middle of a job."""
    for pool in pools:
        limit = getattr(pool.program, "memory_hard", None)
        if not limit:
            continue
        for child in pool.children:
            if child.job is None or not child.signallable:
                continue
            try:
                rss = psutil.Process(child.pid).memory_info().rss
            except psutil.Error:
                continue
            if rss > limit * 1024 * 1024:
                log.warning("%s pid=%s: RSS %d MB > memory_hard %d MB mid-job: SIGKILL",
                            child.name, child.pid, rss >> 20, limit)
                pool.kill_for_memory(child)
