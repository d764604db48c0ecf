"""Schedules, overrides and autoscaling as pure decisions; time is always given, never read."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from supervisor_q.clock import Clock, FakeClock
from supervisor_q.config.schema import AutoscaleConfig, ScheduleRule, WorkerProgram
from supervisor_q.master.schedule import (
    AutoscaleInput,
    AutoscaleState,
    autoscale,
    desired_numprocs,
    next_autoscale_state,
    next_firing,
    scheduled_target,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
OFFICE = (
    ScheduleRule(cron="0 9 * * 1-5", numprocs=8),
    ScheduleRule(cron="0 18 * * 1-5", numprocs=2),
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- clock -------------------------------------------------------------------------------


def test_real_clock_is_aware_utc_and_monotonic_moves_forward():
    clock = Clock()
    assert clock.now().tzinfo is UTC
    assert clock.monotonic() <= clock.monotonic()


def test_fake_clock_advance_moves_both_clocks_and_set_steps_wall_clock_only():
    clock = FakeClock(utc(2024, 1, 8, 9))
    start = clock.monotonic()
    clock.advance(90)
    assert clock.now() == utc(2024, 1, 8, 9, 1, 30)
    assert clock.monotonic() == start + 90
    clock.set(datetime(2024, 1, 1, 12, tzinfo=BERLIN))
    assert clock.now() == utc(2024, 1, 1, 11) and clock.now().tzinfo is UTC
    assert clock.monotonic() == start + 90
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        FakeClock(datetime(2024, 1, 1))


# --- scheduled_target ----------------------------------------------------------------------

# 2024-01-08 is a Monday. (now, expected numprocs, expected fired_at, expected next_at)
SCHEDULE_CASES = [
    (
        "monday before 9: friday 18:00 rule",
        utc(2024, 1, 8, 8),
        2,
        utc(2024, 1, 5, 18),
        utc(2024, 1, 8, 9),
    ),
    (
        "exactly at 9: the rule fires at or before now",
        utc(2024, 1, 8, 9),
        8,
        utc(2024, 1, 8, 9),
        utc(2024, 1, 8, 18),
    ),
    (
        "restart at 10:00 on a weekday gets the 09:00 size",
        utc(2024, 1, 8, 10),
        8,
        utc(2024, 1, 8, 9),
        utc(2024, 1, 8, 18),
    ),
    ("evening", utc(2024, 1, 8, 18, 30), 2, utc(2024, 1, 8, 18), utc(2024, 1, 9, 9)),
    (
        "weekend keeps friday evening's size",
        utc(2024, 1, 13, 12),
        2,
        utc(2024, 1, 12, 18),
        utc(2024, 1, 15, 9),
    ),
]


@pytest.mark.parametrize(
    ("now", "numprocs", "fired_at", "next_at"),
    [case[1:] for case in SCHEDULE_CASES],
    ids=[case[0] for case in SCHEDULE_CASES],
)
def test_latest_rule_at_or_before_now_wins(now, numprocs, fired_at, next_at):
    decision = scheduled_target(OFFICE, "UTC", now)
    assert decision is not None
    assert (decision.numprocs, decision.fired_at, decision.next_at) == (numprocs, fired_at, next_at)
    assert decision.cron == OFFICE[decision.rule_index].cron


def test_rules_use_the_programs_timezone():
    # 09:00 in New York is 14:00 UTC in January.
    assert scheduled_target(OFFICE, "America/New_York", utc(2024, 1, 8, 13, 59)).numprocs == 2
    decision = scheduled_target(OFFICE, "America/New_York", utc(2024, 1, 8, 14))
    assert (decision.numprocs, decision.fired_at) == (8, utc(2024, 1, 8, 14))


def test_no_rules_or_only_firings_older_than_a_year_give_none():
    assert scheduled_target((), "UTC", utc(2024, 1, 8)) is None
    leap_day = (ScheduleRule(cron="0 0 29 2 *", numprocs=3),)
    assert scheduled_target(leap_day, "UTC", utc(2025, 6, 1)) is None
    assert scheduled_target(leap_day, "UTC", utc(2024, 6, 1)).numprocs == 3


def test_rules_firing_at_the_same_instant_the_later_one_wins():
    rules = (ScheduleRule(cron="0 9 * * *", numprocs=1), ScheduleRule(cron="0 9 * * 1", numprocs=5))
    assert scheduled_target(rules, "UTC", utc(2024, 1, 8, 9, 30)).numprocs == 5


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        scheduled_target(OFFICE, "UTC", datetime(2024, 1, 8, 9))


def firings(rules, zone, start: datetime, end: datetime) -> list[tuple[int, datetime]]:
    """Every (rule_index, fired_at) the decision moves through, sampled every 5 minutes."""
    seen: list[tuple[int, datetime]] = []
    now = start
    while now <= end:
        decision = scheduled_target(rules, zone, now)
        key = (decision.rule_index, decision.fired_at)
        if not seen or seen[-1] != key:
            seen.append(key)
        now += timedelta(minutes=5)  # the rules fire on :00 and :30
    return seen


def chain(rules, zone, start: datetime, end: datetime) -> list[datetime]:
    """Firings found by following next_firing, to check it agrees with the minute walk."""
    out, now = [], start
    while (now := next_firing(rules, zone, now)) <= end:
        out.append(now)
    return out


DST_CASES = [
    # Europe/Berlin springs forward 2024-03-31 02:00 CET -> 03:00 CEST (01:00 UTC):
    # 02:30 does not exist that day and fires once at 03:00 CEST.
    (
        "berlin spring-forward",
        BERLIN,
        "30 2 * * *",
        utc(2024, 3, 30, 0),
        [utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1, 0), utc(2024, 4, 1, 0, 30)],
    ),
    # Berlin falls back 2024-10-27 03:00 CEST -> 02:00 CET (01:00 UTC): 02:30 happens
    # twice and fires once, at the first (CEST) occurrence, not again at 01:30 UTC.
    (
        "berlin fall-back",
        BERLIN,
        "30 2 * * *",
        utc(2024, 10, 26, 0),
        [utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)],
    ),
    # New York springs forward 2024-03-10 02:00 EST -> 03:00 EDT (07:00 UTC).
    (
        "new york spring-forward",
        NEW_YORK,
        "30 2 * * *",
        utc(2024, 3, 9, 5),
        [utc(2024, 3, 9, 7, 30), utc(2024, 3, 10, 7, 0), utc(2024, 3, 11, 6, 30)],
    ),
    # New York falls back 2024-11-03 02:00 EDT -> 01:00 EST (06:00 UTC): 01:30 repeats.
    (
        "new york fall-back",
        NEW_YORK,
        "30 1 * * *",
        utc(2024, 11, 2, 4),
        [utc(2024, 11, 2, 5, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)],
    ),
]


@pytest.mark.parametrize(
    ("zone", "cron", "start", "expected"),
    [case[1:] for case in DST_CASES],
    ids=[case[0] for case in DST_CASES],
)
def test_dst_transitions_neither_skip_nor_double_a_rule(zone, cron, start, expected):
    rules = (ScheduleRule(cron=cron, numprocs=4),)
    end = start + timedelta(days=3) - timedelta(minutes=5)
    walked = [fired for _, fired in firings(rules, zone, start, end)]
    # The first entry is the firing before the window; the rest fired inside it.
    assert walked[1:] == expected
    assert chain(rules, zone, start, end) == expected


def test_fall_back_second_pass_keeps_the_later_rule_of_the_first_pass():
    # 02:30 -> 5 and 02:45 -> 7, Berlin fall-back day. During the second 02:30-02:45 (CET)
    # the 02:30 rule must not fire again and undo the 02:45 rule.
    rules = (
        ScheduleRule(cron="30 2 * * *", numprocs=5),
        ScheduleRule(cron="45 2 * * *", numprocs=7),
    )
    second_pass = utc(2024, 10, 27, 1, 35)  # 02:35 CET
    assert second_pass.astimezone(BERLIN).fold == 1
    decision = scheduled_target(rules, BERLIN, second_pass)
    assert (decision.numprocs, decision.fired_at) == (7, utc(2024, 10, 27, 0, 45))
    assert decision.next_at == utc(2024, 10, 28, 1, 30)


# --- desired_numprocs: schedule, override, numprocs ------------------------------------------


def worker(**extra) -> WorkerProgram:
    return WorkerProgram.model_validate({"name": "emails", "queues": ["emails"], **extra})


OFFICE_YAML = [{"cron": "0 9 * * 1-5", "numprocs": 8}, {"cron": "0 18 * * 1-5", "numprocs": 2}]


def test_without_schedule_or_autoscale_numprocs_applies():
    assert desired_numprocs(worker(numprocs=3), utc(2024, 1, 8, 10)) == (3, "numprocs")


def test_schedule_reason_names_the_rule():
    program = worker(schedule=OFFICE_YAML)
    assert desired_numprocs(program, utc(2024, 1, 8, 10)) == (8, "schedule 0 9 * * 1-5")


def test_manual_override_holds_until_the_next_rule_fires():
    program = worker(schedule=OFFICE_YAML)
    override = (12, utc(2024, 1, 8, 10))
    assert desired_numprocs(program, utc(2024, 1, 8, 17, 59), override) == (12, "manual scale")
    assert desired_numprocs(program, utc(2024, 1, 8, 18), override) == (2, "schedule 0 18 * * 1-5")


def test_manual_override_without_schedule_holds_until_dropped():
    override = (5, utc(2024, 1, 8, 10))
    assert desired_numprocs(worker(), utc(2024, 3, 1), override) == (5, "manual scale")


# --- autoscale --------------------------------------------------------------------------


def settings(**extra) -> AutoscaleConfig:
    return AutoscaleConfig.model_validate({"min": 1, "max": 10, "cooldown": 10, **extra})


def load(current, busy=0, queued=0, wait=0.0, runtime=None, now=1000.0) -> AutoscaleInput:
    return AutoscaleInput(current, busy, queued, wait, runtime, now)


FRESH = AutoscaleState()

# (description, settings, bounds, input, state, expected size)
AUTOSCALE_CASES = [
    ("start below the floor jumps to it", settings(), (2, 10), load(0), FRESH, 2),
    ("floor is hard even in cooldown", settings(), (6, 10), load(2), AutoscaleState(999.0), 6),
    ("above the ceiling drops to it", settings(), (1, 4), load(7, busy=7), FRESH, 4),
    ("growth capped at the ceiling", settings(max_shift=5), (1, 10), load(8, 8, 500), FRESH, 10),
    ("max_shift 1: one step under a big backlog", settings(), (1, 10), load(2, 2, 340), FRESH, 3),
    ("max_shift 3: three steps", settings(max_shift=3), (1, 10), load(2, 2, 340), FRESH, 5),
    ("cooldown holds", settings(), (1, 10), load(2, 2, 340, now=1005.0), AutoscaleState(1000.0), 2),
    ("cooldown over", settings(), (1, 10), load(2, 2, 340, now=1010.0), AutoscaleState(1000.0), 3),
    ("size: busy + ceil(queue / 10)", settings(max_shift=10), (1, 10), load(3, 3, 21), FRESH, 6),
    (
        "target_wait: ceil(busy + queued * runtime / target_wait)",
        settings(max_shift=10, target_wait=10),
        (1, 20),
        load(2, 2, 30, runtime=2.0),
        FRESH,
        8,
    ),
    (
        "target_wait without runtimes falls back to by: size",
        settings(max_shift=10, target_wait=10),
        (1, 20),
        load(2, 2, 30),
        FRESH,
        5,
    ),
    (
        "wait: grows while the oldest job waits too long",
        settings(by="wait", target_wait=5),
        (1, 10),
        load(3, 3, 2, wait=6.0),
        FRESH,
        4,
    ),
    (
        "wait: holds under the threshold",
        settings(by="wait", target_wait=5),
        (1, 10),
        load(3, 3, 2, wait=4.0),
        FRESH,
        3,
    ),
    ("idle shrinks one step towards the floor", settings(), (2, 10), load(5), FRESH, 4),
    ("shrink stops at the floor", settings(max_shift=10), (2, 10), load(5), FRESH, 2),
    ("no shrink while jobs wait", settings(), (1, 10), load(5, 1, 3), FRESH, 5),
    ("shrink by one whole process", settings(), (1, 10), load(5, 4), FRESH, 4),
    (
        "no shrink by less than one process",
        settings(target_wait=10),
        (1, 10),
        load(5, 4, 1, runtime=1.0),
        FRESH,
        5,
    ),
    (
        "no shrink below a recent peak",
        settings(),
        (1, 10),
        load(6, 1, now=1010.0),
        AutoscaleState(None, 1000.0, 5.0, 5.0),
        5,
    ),
]


@pytest.mark.parametrize(
    ("config", "bounds", "inp", "state", "expected"),
    [case[1:] for case in AUTOSCALE_CASES],
    ids=[case[0] for case in AUTOSCALE_CASES],
)
def test_autoscale_target(config, bounds, inp, state, expected):
    assert autoscale(config, bounds, inp, state)[0] == expected


def simulate(config: AutoscaleConfig, arrivals, runtime: int, ticks: int) -> list[int]:
    """A pool on a queue, one tick per second: returns the size after each tick."""
    running: list[int] = []  # seconds left of each running job
    queue: list[int] = []  # arrival tick of each waiting job
    size, state, sizes = config.min, AutoscaleState(), []
    for tick in range(ticks):
        running = [left - 1 for left in running if left > 1]
        queue += [tick] * arrivals(tick)
        while queue and len(running) < size:
            queue.pop(0)
            running.append(runtime)
        inp = AutoscaleInput(
            current=size,
            busy=len(running),
            queue_size=len(queue),
            oldest_wait=float(tick - queue[0]) if queue else 0.0,
            avg_runtime=float(runtime),
            now=float(tick),
        )
        target = autoscale(config, (config.min, config.max), inp, state)[0]
        state = next_autoscale_state(state, config, inp, target)
        size = target
        sizes.append(size)
    return sizes


JITTER = [1, 3, 2, 2, 3, 1, 2, 2]  # 2 jobs a second on average, never the same twice running


@pytest.mark.parametrize(
    "extra", [{}, {"by": "wait"}, {"target_wait": 5.0}, {"max_shift": 3}, {"cooldown": 0}]
)
def test_steady_load_holds_a_steady_size(extra):
    config = settings(max=20, **extra)
    sizes = simulate(config, lambda tick: JITTER[tick % len(JITTER)], runtime=2, ticks=900)
    assert len(set(sizes[300:])) == 1, sorted(set(sizes[300:]))
    bursty = simulate(config, lambda tick: 3 if tick % 5 == 0 else 0, runtime=4, ticks=900)
    assert len(set(bursty[300:])) == 1, sorted(set(bursty[300:]))


def test_random_load_changes_size_rarely():
    config = settings(max=30)
    rng = random.Random(7)
    arrivals = [sum(rng.random() < 0.4 for _ in range(5)) for _ in range(3000)]
    sizes = simulate(config, lambda tick: arrivals[tick], runtime=3, ticks=3000)[500:]
    changes = sum(a != b for a, b in zip(sizes, sizes[1:], strict=False))
    assert changes < len(sizes) / 30  # fewer than one change per 30 simulated seconds


def test_backlog_scales_up_to_max_then_idle_scales_down_to_min():
    config = settings(min=2, max=8)
    sizes = simulate(config, lambda tick: 5 if tick < 30 else 0, runtime=2, ticks=600)
    assert sizes[0] == 3 and max(sizes) == 8  # started at min (2), one step on tick 0
    assert all(b - a <= 1 for a, b in zip(sizes, sizes[1:], strict=False))  # max_shift
    assert sizes[-1] == 2


def test_desired_numprocs_composes_autoscale_with_schedule_floor():
    program = worker(schedule=OFFICE_YAML, autoscale={"min": 1, "max": 16})
    monday_10 = utc(2024, 1, 8, 10)
    assert desired_numprocs(program, monday_10) == (8, "schedule 0 9 * * 1-5")
    busy = load(8, busy=8, queued=340)
    assert desired_numprocs(program, monday_10, None, AutoscaleState(), busy) == (
        9,
        "autoscale: 340 queued",
    )
    idle = load(8)
    assert desired_numprocs(program, monday_10, None, AutoscaleState(), idle) == (
        8,
        "schedule 0 9 * * 1-5",
    )
    no_schedule = worker(autoscale={"min": 2, "max": 16})
    assert desired_numprocs(no_schedule, monday_10) == (2, "autoscale min")
    assert desired_numprocs(no_schedule, monday_10, (20, monday_10), None, busy) == (
        20,
        "manual scale",
    )


# --- autoscale.fleet_max: the cap the fleet grants ------------------------------------------


def test_fleet_cap_limits_growth_and_is_asked_with_the_floor():
    from supervisor_q.master.scaling import Scaling

    program = worker(autoscale={"min": 2, "max": 8, "fleet_max": 5, "cooldown": 0,
                                "max_shift": 4})
    asked: list[tuple[int, int]] = []

    def cap(wanted: int, floor: int) -> int:
        asked.append((wanted, floor))
        return 3

    target, reason = Scaling().decide(program, utc(2024, 1, 8, 10), load(2, 2, 100), cap)
    assert (target, reason) == (3, "autoscale fleet_max 5: 3 here")
    assert asked == [(6, 2)]  # autoscale wanted 6 (2 + 4); the floor is min
    scaling = Scaling(override=(7, utc(2024, 1, 8, 10)))
    assert scaling.decide(program, utc(2024, 1, 8, 11), load(2), cap) == (7, "manual scale")
    assert asked[-1] == (7, 7)  # a manual size is recorded as the share, never capped
