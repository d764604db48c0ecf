"""Once-a-second checks of the running pools: `memory_hard` (psutil) and the master's
command inbox in Redis. The arbiter calls them from its slow tick (`monitor:` thresholds
are alerts now: alerting.py).

Imports the fleet inbox, the command handlers and psutil; pools only through their
methods.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import psutil
import redis

from supervisor_q.ctl.protocol import ControlError
from supervisor_q.fleet import inbox
from supervisor_q.master import commands

if TYPE_CHECKING:
    from supervisor_q.master.arbiter import Arbiter
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


def apply_inbox(arbiter: Arbiter) -> None:
    """Apply the commands other hosts left in this master's Redis inbox (`scale` from the
    dashboard or `scale --all`), each like the control socket's command."""
    if arbiter.stopping is not None:
        return  # left in Redis; the inbox expires
    try:
        received = inbox.take(arbiter.queue.client, arbiter.fleet.id)
    except redis.RedisError:
        return
    for command, args in received:
        try:
            log.info("inbox %s: %s", command, commands.handle(arbiter, command, args))
        except ControlError as exc:
            log.warning("inbox %s refused: %s", command, str(exc)[:200])
