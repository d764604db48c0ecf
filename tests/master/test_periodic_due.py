"""Periodic programs without processes or Redis: the program file (config/periodic.py)
and the due-time arithmetic (master/due.py)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from supervisor_q.config.loading import ConfigError, load_program_file
from supervisor_q.config.periodic import PeriodicEntry, PeriodicProgram
from supervisor_q.master.due import LATE, Due, decide, latest, offset, upcoming


def _load(tmp_path: Path, text: str) -> PeriodicProgram:
    path = tmp_path / "cron.yaml"
    path.write_text(textwrap.dedent(text))
    program = load_program_file(path)
    assert isinstance(program, PeriodicProgram)
    return program


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "cron.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        load_program_file(path)
    return caught.value.problems


def _entry(**keys: object) -> PeriodicEntry:
    return PeriodicEntry.model_validate({"name": "e", "job": "app:job", **keys})


def _epoch(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def test_a_periodic_program_loads_with_its_entries(tmp_path: Path) -> None:
    program = _load(tmp_path, """
        timezone: Europe/Berlin
        periodic:
          - {name: tick, job: app.jobs:tick, every: 30s, queue: fast}
          - name: nightly
            job: app.jobs:report
            cron: "0 3 * * *"
            args: [1, "a"]
            kwargs: {team: ops}
            overlap: false
            catch_up: true
            jitter: 30
          - {name: seconds, job: x, cron: "*/10 * * * * *", timezone: UTC}
        """)
    assert program.kind == "periodic" and program.numprocs == 0
    tick, nightly, seconds = program.periodic
    assert (tick.interval, tick.queue, tick.timezone) == (30.0, "fast", None)
    assert (nightly.cron, nightly.args, nightly.kwargs) == ("0 3 * * *", [1, "a"], {"team": "ops"})
    assert (nightly.overlap, nightly.catch_up, nightly.jitter) == (False, True, 30.0)
    assert seconds.interval is None and seconds.timezone == "UTC"


def test_every_problem_names_file_key_and_problem(tmp_path: Path) -> None:
    problems = _problems(tmp_path, """
        numprocs: 2
        periodic:
          - {name: a, job: x, every: 2x}
          - {name: b, job: "", cron: "0 3 * *"}
          - {name: c, job: x, every: 1s, cron: "* * * * *"}
          - {name: d, job: x}
          - {name: a, job: x, every: 1m, kwargs: {when: 2020-01-01}}
          - {name: f, job: x, every: 1m, kwargs: {queue: q}}
          - {name: g, job: x, every: 0s}
          - {name: h, job: x, every: 1m, jitter: 60}
          - {name: i, job: x, every: 99999999999999999999d}
          - {name: j, job: x, cron: "*/5 * * * *", jitter: 300}
          - {name: k, job: x, every: 1m, kwargs: {after_commit: true}}
          - {name: l, job: "os:system\\n$(touch x)", every: 1m}
        """)
    path = tmp_path / "cron.yaml"
    assert problems == [
        f"{path}: numprocs: does not apply to a periodic program (it runs no processes)",
        f"{path}: periodic.0.every: must be a number and a unit (s, m, h or d) such as "
        f"30s or 5m, got '2x'",
        f"{path}: periodic.1.job: must not be empty",
        f"{path}: periodic.1.cron: must have 5 fields (minute hour day-of-month month "
        f"day-of-week) or 6 with seconds first, got 4 in '0 3 * *'",
        f"{path}: periodic.2: give exactly one of cron: or every:",
        f"{path}: periodic.3: give exactly one of cron: or every:",
        f"{path}: periodic.4.kwargs: must hold JSON values only (strings, numbers, "
        f"true/false, null, lists, mappings): Object of type date is not JSON serializable",
        f"{path}: periodic.5.kwargs: queue, delay, connection and after_commit are dispatch "
        f"options, not keyword arguments",
        f"{path}: periodic.6.every: must be from 1s to 366d, got '0s'",
        f"{path}: periodic.7: jitter must be less than the time between firings (60 s), "
        f"got 60",
        f"{path}: periodic.8.every: must be from 1s to 366d, got '99999999999999999999d'",
        f"{path}: periodic.9: jitter must be less than the time between firings (300 s), "
        f"got 300",
        f"{path}: periodic.10.kwargs: queue, delay, connection and after_commit are "
        f"dispatch options, not keyword arguments",
        f"{path}: periodic.11.job: must not contain control characters (newlines, tabs, "
        f"...)",
    ]


def test_entry_names_are_unique_and_kinds_do_not_mix(tmp_path: Path) -> None:
    path = tmp_path / "cron.yaml"
    assert _problems(tmp_path, """
        queues: [a]
        periodic:
          - {name: a, job: x, every: 1m}
          - {name: a, job: y, every: 2m}
        """) == [
        f"{path}: queues: does not apply to a periodic program (it runs no processes)",
        f"{path}: periodic: duplicate entry name 'a'",
    ]
    assert _problems(tmp_path, "periodic: []\n") == [
        f"{path}: periodic: must list 1 to 200 entries, got 0"]


def test_every_is_due_on_multiples_of_its_interval() -> None:
    entry = _entry(every="5m")
    now = _epoch(2026, 1, 1, 10, 7, 30)
    five_past = _epoch(2026, 1, 1, 10, 5)
    assert latest("p", entry, "UTC", now) == Due(five_past, five_past)
    assert upcoming("p", entry, "UTC", now).at == _epoch(2026, 1, 1, 10, 10)


def test_six_field_cron_has_seconds_first() -> None:
    entry = _entry(cron="*/20 * * * * *")
    now = _epoch(2026, 1, 1, 10, 0, 45)
    assert latest("p", entry, "UTC", now).at == _epoch(2026, 1, 1, 10, 0, 40)
    assert upcoming("p", entry, "UTC", now).at == _epoch(2026, 1, 1, 10, 1, 0)


def test_a_cron_nickname_works_as_in_pool_schedules() -> None:
    entry = _entry(cron="@hourly")
    now = _epoch(2026, 1, 1, 10, 20)
    assert latest("p", entry, "UTC", now).at == _epoch(2026, 1, 1, 10, 0)
    assert upcoming("p", entry, "UTC", now).at == _epoch(2026, 1, 1, 11, 0)


def test_cron_follows_the_dst_policy_of_pool_schedules() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29: it fires once, at 03:00 CEST (01:00 UTC)
    entry = _entry(cron="30 2 * * *", timezone="Europe/Berlin")
    after = _epoch(2026, 3, 29, 0, 0)
    assert upcoming("p", entry, "Europe/Berlin", after).at == _epoch(2026, 3, 29, 1, 0)
    # 02:30 happens twice on 2026-10-25: it fires at the first (00:30 UTC), not again
    seen_first = _epoch(2026, 10, 25, 0, 30, 1)
    assert upcoming("p", entry, "Europe/Berlin", seen_first).at == _epoch(2026, 10, 26, 1, 30)


def test_jitter_is_within_bounds_and_the_same_on_every_master() -> None:
    entry = _entry(every="1h", jitter=600)
    offsets = {offset("p", entry, _epoch(2026, 1, 1, hour)) for hour in range(24)}
    assert all(0 <= o < 600 for o in offsets) and len(offsets) == 24
    due = _epoch(2026, 1, 1, 10)
    assert offset("p", entry, due) == offset("p", _entry(every="1h", jitter=600), due)
    moment = due + offset("p", entry, due)
    assert latest("p", entry, "UTC", moment - 0.001).at == due - 3600  # not yet
    assert latest("p", entry, "UTC", moment) == Due(due, moment)


def test_decide_fires_once_skips_missed_and_catches_up_one() -> None:
    due = Due(1000.0, 1000.0)
    assert decide(None, None, 1000.5, False) == "wait"
    assert decide(due, 1000.0, 1000.5, False) == "wait"  # handled already
    assert decide(due, 990.0, 1000.5, False) == "fire"
    assert decide(due, None, 1000.0 + LATE, False) == "fire"  # a new entry, on time
    assert decide(due, None, 1000.0 + LATE + 1, True) == "start"  # new: nothing missed
    assert decide(due, 990.0, 1000.0 + LATE + 1, False) == "skip_missed"
    assert decide(due, 990.0, 1000.0 + LATE + 1, True) == "catch_up"
