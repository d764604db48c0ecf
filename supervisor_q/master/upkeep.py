"""Once-a-second checks of the running pools: `memory_hard` (psutil), the master's
command inbox in Redis, and each pool's target (a load sample for autoscale, the fleet
cap, `balance:`). The arbiter calls them from its slow tick (`monitor:` thresholds are
alerts now: alerting.py).

Imports the fleet inbox, the command handlers and psutil; pools only through their
methods.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import psutil
import redis

from supervisor_q.config.schema import WorkerProgram
from supervisor_q.ctl.protocol import ControlError
from supervisor_q.fleet import inbox
from supervisor_q.master import balance, commands
from supervisor_q.master.schedule import AutoscaleInput

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
    if arbiter.stopping is not None or not arbiter.redis.open:
        return  # left in Redis; the inbox expires
    try:
        received = inbox.take(arbiter.queue.client, arbiter.fleet.id)
    except redis.RedisError as exc:
        arbiter.redis.fault(exc, log, "inbox")
        return
    for command, args in received:
        try:
            log.info("inbox %s: %s", command, commands.handle(arbiter, command, args))
        except ControlError as exc:
            log.warning("inbox %s refused: %s", command, str(exc)[:200])


def update_target(arbiter: Arbiter, pool: Pool) -> None:
    """The pool's target from its schedule, override and autoscale, then its balance."""
    load = sample_load(arbiter, pool) if pool.program.autoscale is not None else None
    cap = arbiter.fleet.cap_for(pool.name, pool.program, len(pool.children)) if load else None
    pool.update_target(arbiter.clock.now(), load, cap)
    balance.rebalance(pool, arbiter.queue if arbiter.redis.open else None,
                      arbiter.clock.monotonic(),
                      lambda exc: arbiter.redis.fault(exc, log, "balance"))


def sample_load(arbiter: Arbiter, pool: Pool) -> AutoscaleInput | None:
    """What autoscale decides from: the queues' length and oldest wait, busy children."""
    program = pool.program
    assert isinstance(program, WorkerProgram)
    if not arbiter.redis.open:  # Redis is away: no load to sample until the next probe
        return None
    try:
        size, oldest = 0, 0.0
        for queue in program.queues:
            length, waited = arbiter.queue.load(queue)
            size, oldest = size + length, max(oldest, waited)
    except redis.RedisError as exc:
        arbiter.redis.fault(exc, log, "autoscale")
        return None
    busy = sum(1 for c in pool.children if c.job is not None)
    return AutoscaleInput(current=len(pool.active()), busy=busy, queue_size=size,
                          oldest_wait=oldest, avg_runtime=pool.scaling.average_runtime(),
                          now=arbiter.clock.monotonic())
