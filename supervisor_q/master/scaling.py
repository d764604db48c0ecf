"""A pool's size bookkeeping: the manual override, the autoscale state and the job
runtimes autoscaling learns from. `decide` turns them, the program and a load sample
into (target, reason) with master/schedule.py; the pool applies the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from supervisor_q.master.schedule import (
    AutoscaleInput,
    AutoscaleState,
    Program,
    desired_numprocs,
    next_autoscale_state,
)

RUNTIMES_KEPT = 50  # recent job runtimes averaged for autoscale's target_wait


@dataclass
class Scaling:
    override: tuple[int, datetime] | None = None  # (size, aware datetime it was set)
    autoscale: AutoscaleState = field(default_factory=AutoscaleState)
    runtimes: list[float] = field(default_factory=list)  # recent job runtimes
    next_monitor: float = 0.0  # when to check the program's `monitor:` thresholds again

    def record_runtime(self, seconds: float) -> None:
        self.runtimes.append(seconds)
        del self.runtimes[:-RUNTIMES_KEPT]

    def average_runtime(self) -> float | None:
        return sum(self.runtimes) / len(self.runtimes) if self.runtimes else None

    def decide(self, program: Program, now_wall: datetime,
               load: AutoscaleInput | None) -> tuple[int, str]:
        """(target, reason) now; advances the autoscale state and drops an override the
        schedule's next rule has ended."""
        target, reason = desired_numprocs(program, now_wall, self.override, self.autoscale,
                                          load)
        if load is not None and program.autoscale is not None:
            self.autoscale = next_autoscale_state(self.autoscale, program.autoscale, load,
                                                  target)
        if self.override is not None and reason != "manual scale":
            self.override = None  # the schedule's next rule fired: the override is over
        return target, reason
