"""A pool's size bookkeeping: the manual override, the autoscale state and the job
runtimes autoscaling learns from, and `balance:`'s plan (master/balance.py). `decide`
turns them, the program and a load sample into (target, reason) with
master/schedule.py; the pool applies the answer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from supervisor_q.master.balance import Balancer
from supervisor_q.master.schedule import (
    AutoscaleInput,
    AutoscaleState,
    Program,
    desired_numprocs,
    next_autoscale_state,
    scheduled_target,
)

RUNTIMES_KEPT = 50  # recent job runtimes averaged for autoscale's target_wait
# autoscale.fleet_max: (the size wanted, the floor) -> the most this master may run now
# (fleet/member.py: FleetMember.cap_for asks Redis; never below the floor).
FleetCap = Callable[[int, int], int]


@dataclass
class Scaling:
    override: tuple[int, datetime] | None = None  # (size, aware datetime it was set)
    autoscale: AutoscaleState = field(default_factory=AutoscaleState)
    # recent job runtimes (a deque: one append per job of every child, oldest dropped)
    runtimes: deque[float] = field(default_factory=lambda: deque(maxlen=RUNTIMES_KEPT))
    next_monitor: float = 0.0  # when to check the program's `monitor:` thresholds again
    balancer: Balancer = field(default_factory=Balancer)  # `balance:`'s queue plan

    def record_runtime(self, seconds: float) -> None:
        self.runtimes.append(seconds)

    def average_runtime(self) -> float | None:
        return sum(self.runtimes) / len(self.runtimes) if self.runtimes else None

    def decide(self, program: Program, now_wall: datetime, load: AutoscaleInput | None,
               fleet_cap: FleetCap | None = None) -> tuple[int, str]:
        """(target, reason) now; advances the autoscale state and drops an override the
        schedule's next rule has ended. With fleet_cap (autoscale.fleet_max), the target
        is at most what the fleet grants this master (a manual size is only recorded)."""
        target, reason = desired_numprocs(program, now_wall, self.override, self.autoscale,
                                          load)
        if fleet_cap is not None and load is not None and program.autoscale is not None:
            target, reason = _fleet_capped(program, now_wall, target, reason, fleet_cap)
        if load is not None and program.autoscale is not None:
            self.autoscale = next_autoscale_state(self.autoscale, program.autoscale, load,
                                                  target)
        if self.override is not None and reason != "manual scale":
            self.override = None  # the schedule's next rule fired: the override is over
        return target, reason


def _fleet_capped(program: Program, now_wall: datetime, target: int, reason: str,
                  fleet_cap: FleetCap) -> tuple[int, str]:
    settings = program.autoscale
    assert settings is not None
    if reason == "manual scale":
        fleet_cap(target, target)  # asked for: recorded as this master's share, not capped
        return target, reason
    rule = scheduled_target(program.schedule, program.timezone, now_wall)
    cap = fleet_cap(target, rule.numprocs if rule is not None else settings.min)
    if target > cap:
        return cap, f"autoscale fleet_max {settings.fleet_max}: {cap} here"
    return target, reason
