"""How many children a program should run: cron schedules, manual overrides and autoscaling,
as pure functions of (config, now, measurements). The pool tick asks; the pool applies.

This module imports nothing from the supervisor_q package: programs, rules and autoscale
settings are read through the small Protocols below (config/schema.py's models satisfy them).

Schedules. The rule that fired most recently at or before `now` sets the size, so a start
or reload at any time of day gets the size the schedule has in force (a restart at 10:00
on a weekday gets the 09:00 rule's size); firings missed during a stall are never replayed,
only the latest counts. Firings older than LOOKBACK (366 days) are ignored; with none
left, there is no scheduled size. When rules fire at the same instant, the one listed
later wins.

DST policy. Rules are evaluated on the wall clock of the program's timezone. croniter is
used for parsing and for stepping through wall-clock times (on a DST-free clock); turning
a wall-clock time into an instant follows this policy, which croniter 7's own aware-time
mode does not (it fires a rule in the repeated hour twice):
- spring-forward: a rule whose wall time does not exist that day (02:30 in Europe/Berlin
  on the last Sunday of March) fires once, at the first instant after the gap (03:00 CEST);
- fall-back: a rule whose wall time occurs twice (02:30 on the last Sunday of October)
  fires once, at the first occurrence (02:30 CEST), not again at 02:30 CET.
So DST neither skips nor doubles a firing.

Autoscaling (`autoscale`). The floor is autoscale.min, or the size of the schedule rule
in force; the ceiling is autoscale.max. Steps, in order:
1. Bounds are hard: a pool outside [floor, ceiling] moves to the nearest bound at once
   (no cooldown, no step limit), so a pool starts at its minimum / schedule size.
2. Cooldown: no change until `cooldown` seconds after the last change.
3. Demand, a real number of processes:
   - target_wait set and avg_runtime measured (> 0):
     demand = busy + queue_size * avg_runtime / target_wait
     (its ceiling is the size that clears the backlog within target_wait);
   - by: size: demand = busy + queue_size / SIZE_BACKLOG_PER_PROCESS (10 jobs);
   - by: wait: demand = current + max_shift while oldest_wait > threshold
     (target_wait, else DEFAULT_WAIT_THRESHOLD = 10 s), else busy.
4. Grow when demand > current: to min(current + max_shift, ceil(demand), ceiling).
5. Shrink only when the queue is calm (empty; with waits as the measure, oldest_wait
   under half the threshold also counts) and the recent peak demand (the highest
   demand over the last one to two windows of max(cooldown, PEAK_WINDOW) seconds,
   this sample included) is at least one whole process below current: to
   max(current - max_shift, ceil(peak), floor).
6. Otherwise hold.
Growth reacts to one sample; shrinking needs a whole quiet window. That asymmetry is
the hysteresis: a steady load whose samples swing between n-1 and n busy holds n.

Manual overrides (`scale PROGRAM N`, TTIN/TTOU) are passed as (numprocs, set_at) and hold
until the next schedule firing after set_at; with no schedule they hold until the caller
drops them (a reload does). A manual size beats autoscale and its bounds: it was asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

from supervisor_q.config.validators import croniter

LOOKBACK = timedelta(days=366)
# `by: size`: one more process is worth it for every this many waiting jobs.
SIZE_BACKLOG_PER_PROCESS = 10
# `by: wait` without target_wait: grow while the oldest job has waited longer than this.
DEFAULT_WAIT_THRESHOLD = 10.0
# Shrinking looks at the peak demand over windows of max(cooldown, PEAK_WINDOW) seconds.
PEAK_WINDOW = 30.0


class Rule(Protocol):
    @property
    def cron(self) -> str: ...
    @property
    def numprocs(self) -> int: ...


class AutoscaleSettings(Protocol):
    @property
    def min(self) -> int: ...
    @property
    def max(self) -> int: ...
    @property
    def by(self) -> str: ...
    @property
    def cooldown(self) -> float: ...
    @property
    def max_shift(self) -> int: ...
    @property
    def target_wait(self) -> float | None: ...
    @property
    def fleet_max(self) -> int | None: ...


class Program(Protocol):
    @property
    def numprocs(self) -> int: ...
    @property
    def schedule(self) -> Sequence[Rule]: ...
    @property
    def timezone(self) -> str: ...
    @property
    def autoscale(self) -> AutoscaleSettings | None: ...


@dataclass(frozen=True)
class ScheduleDecision:
    numprocs: int
    rule_index: int
    cron: str
    fired_at: datetime  # aware UTC: the winning rule's last firing at or before now
    next_at: datetime | None  # aware UTC: the next firing of any rule after now


@dataclass(frozen=True)
class AutoscaleInput:
    current: int  # children the pool runs now
    busy: int  # of which are running a job
    queue_size: int  # jobs waiting in the program's queues
    oldest_wait: float  # seconds the oldest waiting job has waited (0 when empty)
    avg_runtime: float | None  # measured seconds per job, None until measured
    now: float  # monotonic seconds


@dataclass(frozen=True)
class AutoscaleState:
    """What autoscaling remembers between ticks; advance it with `next_autoscale_state`."""

    last_change_at: float | None = None  # monotonic time of the last size change
    # Peak demand over two tumbling windows (see _recent_peak): shrinking follows the
    # recent peak, not one sample taken in a quiet moment.
    window_start: float | None = None
    peak: float = 0.0  # highest demand seen in the window that began at window_start
    previous_peak: float = 0.0  # highest demand seen in the window before it


def scheduled_target(
    rules: Sequence[Rule], timezone: str | tzinfo, now: datetime
) -> ScheduleDecision | None:
    """The rule that fired most recently at or before `now`, or None if none did."""
    zone = _zone(timezone)
    best: tuple[datetime, int] | None = None
    for index, rule in enumerate(rules):
        fired = _last_firing(rule.cron, zone, now)
        # `>=` on ties: the rule listed later wins.
        if fired is not None and (best is None or fired >= best[0]):
            best = (fired, index)
    if best is None:
        return None
    fired_at, index = best
    return ScheduleDecision(
        numprocs=rules[index].numprocs,
        rule_index=index,
        cron=rules[index].cron,
        fired_at=fired_at,
        next_at=next_firing(rules, zone, now),
    )


def next_firing(rules: Sequence[Rule], timezone: str | tzinfo, after: datetime) -> datetime | None:
    """The first firing of any rule strictly after `after` (aware UTC), or None."""
    zone = _zone(timezone)
    found = [t for t in (_next_firing(rule.cron, zone, after) for rule in rules) if t]
    return min(found, default=None)


def last_cron_firing(cron: str, timezone: str | tzinfo, now: datetime) -> datetime | None:
    """One cron's latest firing at or before `now` (aware UTC), under the DST policy."""
    return _last_firing(cron, _zone(timezone), now)


def next_cron_firing(cron: str, timezone: str | tzinfo, after: datetime) -> datetime | None:
    """One cron's first firing strictly after `after` (aware UTC), under the DST policy."""
    return _next_firing(cron, _zone(timezone), after)


def _zone(timezone: str | tzinfo) -> tzinfo:
    return ZoneInfo(timezone) if isinstance(timezone, str) else timezone


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"schedule decisions need an aware datetime, got naive {now!r}")
    return now.astimezone(UTC)


def _wall(instant: datetime, zone: tzinfo) -> datetime:
    """Naive wall-clock time of `instant` in `zone`."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _instant(wall: datetime, zone: tzinfo) -> datetime:
    """Wall-clock time in `zone` -> the instant it fires at, under the DST policy."""
    # fold=0 is the first occurrence of a repeated wall time (fall-back policy).
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) == wall:
        return first
    # A wall time in a spring-forward gap: find the first whole second whose wall time is
    # past it, i.e. the transition. fold=1 lands before the gap, fold=0 after it (PEP 495).
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _walls(cron: str, start: datetime, backwards: bool) -> Iterator[datetime]:
    """croniter over naive wall-clock times. Backwards includes `start`; forwards does not."""
    # Run croniter on UTC, which has no DST, so it does pure wall-clock arithmetic.
    base = start.replace(tzinfo=UTC)
    if backwards:  # get_prev is strictly before its start; nudge to include `start`
        base += timedelta(microseconds=1)
    # 6 fields: seconds first (periodic entries, config/periodic.py); pool rules have 5.
    steps = croniter().croniter(cron, base, second_at_beginning=len(cron.split()) == 6)
    while True:
        wall = steps.get_prev(datetime) if backwards else steps.get_next(datetime)
        yield wall.replace(tzinfo=None)


def _last_firing(cron: str, zone: tzinfo, now: datetime) -> datetime | None:
    now = _aware(now)
    local = now.astimezone(zone)
    start = local.replace(tzinfo=None)
    if local.fold:
        # Second pass of a repeated hour: wall times up to the end of the first pass have
        # already fired (at their first occurrence), so search from there and skip the rest.
        start += local.replace(fold=0).utcoffset() - local.utcoffset()
    try:
        for wall in _walls(cron, start, backwards=True):
            fired = _instant(wall, zone)
            if fired <= now:  # instants only decrease from here: this is the latest
                return fired if now - fired <= LOOKBACK else None
    except croniter().CroniterBadDateError:
        return None
    return None  # pragma: no cover - the iterator is endless


def _next_firing(cron: str, zone: tzinfo, after: datetime) -> datetime | None:
    after = _aware(after)
    try:
        for wall in _walls(cron, _wall(after, zone), backwards=False):
            fired = _instant(wall, zone)
            # Skips wall times of a repeated hour that already fired in its first pass.
            if fired > after:
                return fired
    except croniter().CroniterBadDateError:
        return None
    return None  # pragma: no cover - the iterator is endless


def autoscale(
    settings: AutoscaleSettings,
    bounds: tuple[int, int],
    inp: AutoscaleInput,
    state: AutoscaleState,
) -> tuple[int, str]:
    """(the pool size autoscaling wants now, the step that decided it: "floor", "ceiling",
    "cooldown", "grow", "shrink" or "hold"), given (floor, ceiling) bounds.

    The steps are in the module docstring ("Autoscaling").
    """
    ceiling = bounds[1]
    floor = min(bounds[0], ceiling)
    current = inp.current
    if current < floor:
        return floor, "floor"
    if current > ceiling:
        return ceiling, "ceiling"
    if state.last_change_at is not None and inp.now - state.last_change_at < settings.cooldown:
        return current, "cooldown"
    demand, calm = _demand(settings, inp)
    if demand > current:
        return min(current + settings.max_shift, math.ceil(demand), ceiling), "grow"
    peak = _recent_peak(state, settings, inp.now, demand)
    if calm and peak <= current - 1:
        return max(current - settings.max_shift, math.ceil(peak), floor), "shrink"
    return current, "hold"


def _demand(settings: AutoscaleSettings, inp: AutoscaleInput) -> tuple[float, bool]:
    """(processes wanted as a real number, whether the queue is calm enough to shrink)."""
    if settings.target_wait and inp.avg_runtime:
        demand = inp.busy + inp.queue_size * inp.avg_runtime / settings.target_wait
        return demand, inp.queue_size == 0 or inp.oldest_wait < settings.target_wait / 2
    if settings.by == "wait":
        threshold = settings.target_wait or DEFAULT_WAIT_THRESHOLD
        if inp.oldest_wait > threshold:
            return float(inp.current + settings.max_shift), False
        return float(inp.busy), inp.queue_size == 0 or inp.oldest_wait < threshold / 2
    return inp.busy + inp.queue_size / SIZE_BACKLOG_PER_PROCESS, inp.queue_size == 0


def _recent_peak(
    state: AutoscaleState, settings: AutoscaleSettings, now: float, demand: float
) -> float:
    """Highest demand over the current and the previous window, `demand` included."""
    if state.window_start is None:
        return demand
    window = max(settings.cooldown, PEAK_WINDOW)
    age = now - state.window_start
    if age < window:
        return max(state.peak, state.previous_peak, demand)
    if age < 2 * window:  # the stored window has ended and becomes the previous one
        return max(state.peak, demand)
    return demand


def next_autoscale_state(
    state: AutoscaleState, settings: AutoscaleSettings, inp: AutoscaleInput, target: int
) -> AutoscaleState:
    """The state after a tick that observed `inp` and applied `target`; call every tick."""
    demand, _ = _demand(settings, inp)
    changed_at = inp.now if target != inp.current else state.last_change_at
    window = max(settings.cooldown, PEAK_WINDOW)
    if state.window_start is None:
        # No history: treat the first sample as the previous window too.
        return AutoscaleState(changed_at, inp.now, demand, demand)
    age = inp.now - state.window_start
    if age < window:
        return AutoscaleState(
            changed_at, state.window_start, max(state.peak, demand), state.previous_peak
        )
    previous = state.peak if age < 2 * window else demand
    return AutoscaleState(changed_at, inp.now, demand, previous)


def desired_numprocs(
    program: Program,
    now: datetime,
    override: tuple[int, datetime] | None = None,
    autoscale_state: AutoscaleState | None = None,
    load: AutoscaleInput | None = None,
) -> tuple[int, str]:
    """(target size, short reason for `status`), composing schedule, override and autoscale.

    Precedence: a live manual override; else autoscale within (schedule size or min, max);
    else the schedule rule in force; else numprocs. Without `load` (nothing measured yet)
    an autoscaled pool sits at its floor.
    """
    decision = scheduled_target(program.schedule, program.timezone, now)
    if override is not None:
        size, set_at = override
        expires = next_firing(program.schedule, program.timezone, set_at)
        if expires is None or expires > _aware(now):
            return size, "manual scale"
    scheduled = f"schedule {decision.cron}" if decision else None
    settings = program.autoscale
    if settings is None:
        if decision is not None:
            return decision.numprocs, scheduled or ""
        return program.numprocs, "numprocs"
    floor = decision.numprocs if decision is not None else settings.min
    floor_reason = scheduled or "autoscale min"
    if load is None:
        return min(floor, settings.max), floor_reason
    target, why = autoscale(
        settings, (floor, settings.max), load, autoscale_state or AutoscaleState()
    )
    return target, _autoscale_reason(why, target, floor, floor_reason, settings.max, load)


def _autoscale_reason(why: str, target: int, floor: int, floor_reason: str, ceiling: int,
                      load: AutoscaleInput) -> str:
    """The `status` reason for an autoscale decision."""
    if why == "floor" or (why == "shrink" and target == floor):
        return floor_reason
    if why == "ceiling" or (why == "grow" and target == ceiling):
        return f"autoscale max: {load.queue_size} queued"
    if why == "grow":
        return f"autoscale: {load.queue_size} queued"
    if why == "shrink":
        return "autoscale: idle" if load.busy == 0 else f"autoscale: {load.busy} busy"
    return f"autoscale: {load.queue_size} queued, {load.busy} busy"
