"""Shutdown in Supervisor's order: programs stop by `priority`, highest value first, and
the next priority is asked to stop only once every child of the previous one has exited
(so `priority: 10` for a database proxy outlives the `priority: 999` workers using it).
A second TERM/INT asks every remaining program to stop at once (each child still
finishes its job, up to stopwaitsecs); a fast shutdown (QUIT) kills everything at once.
Imports nothing of the master but the Pool it is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor_q.master.pool import Pool


def stop_in_phases(pools: Mapping[str, Pool], now: float, fast: bool) -> None:
    """Called when the shutdown begins and on every loop turn after it."""
    if fast:
        for pool in reversed(pools.values()):
            pool.shutdown(now, fast=True)
        return
    told = [pool for pool in pools.values() if pool.mode == "shutdown"]
    if any(pool.alive() for pool in told):
        return  # the current phase is still stopping
    left = [pool for pool in pools.values() if pool.mode != "shutdown"]
    if left:
        last = max(pool.program.priority for pool in left)
        for pool in reversed(left):
            if pool.program.priority == last:
                pool.shutdown(now, fast=False)


def stop_all_now(pools: Mapping[str, Pool], now: float) -> None:
    """The phases skipped: every program not yet stopping is asked to stop now."""
    for pool in reversed(pools.values()):
        if pool.mode != "shutdown":
            pool.shutdown(now, fast=False)
