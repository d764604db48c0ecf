"""`periodic:` programs: entries the master dispatches on a cron or an interval.

A periodic program has no processes: the master itself queues each entry's job when it
is due (master/periodic.py). Its file is validated like every program file; the keys
that only make sense for processes are refused by name. Imports config/schema.py only.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from supervisor_q.config.schema import (
    NAME_PATTERN,
    PositiveSeconds,
    QueueName,
    Seconds,
    _Frozen,
    _ProgramBase,
)
from supervisor_q.config.validators import check_timezone, croniter

EVERY_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
EVERY_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_ENTRIES = 200  # entries per program: each is evaluated every second by the master
# Job.dispatch's own options (cli/jobs.py RESERVED_KWARGS): no job argument may use them.
RESERVED_KWARGS = ("queue", "delay", "connection", "after_commit")
MAX_EVERY = 366 * 86400.0  # a year: longer intervals are a typo (and overflow dates)
MAX_ARGUMENTS_JSON = 16_384  # characters of an entry's args + kwargs as JSON
# _ProgramBase's keys that only concern processes: refused in a periodic program (loading).
PROCESS_KEYS = ("numprocs", "startsecs", "startretries", "schedule", "environment",
                "directory", "user", "umask", "alerts", "stdout_logfile", "stderr_logfile",
                "redirect_stderr", "stdout_logfile_maxbytes", "stderr_logfile_maxbytes",
                "logfile_maxbytes", "logfile_backups", "log_jobs")


def every_seconds(value: str) -> float:
    """`30s`, `5m`, `1h`, `1d` (or `1.5m`) -> seconds; ValueError for anything else."""
    match = EVERY_PATTERN.match(value)
    if match is None:
        raise ValueError(f"must be a number and a unit (s, m, h or d) such as 30s or 5m, "
                         f"got {value!r}")
    seconds = float(match.group(1)) * EVERY_UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_EVERY:
        raise ValueError(f"must be from 1s to 366d, got {value[:40]!r}")
    return seconds


def check_cron(value: str) -> str:
    """5 fields, 6 with seconds first, or `@hourly`-style (as pool schedules take); it
    must fire at least once."""
    value = " ".join(value.split())
    fields = len(value.split())
    cron = croniter()
    if value.startswith("@") and fields == 1:
        if not cron.croniter.is_valid(value):
            raise ValueError(f"{value[:40]!r} is not a cron nickname such as @hourly or @daily")
        return value
    if fields not in (5, 6):
        raise ValueError(f"must have 5 fields (minute hour day-of-month month day-of-week) "
                         f"or 6 with seconds first, got {fields} in {value!r}")
    seconds_first = fields == 6
    if not cron.croniter.is_valid(value, second_at_beginning=seconds_first):
        raise ValueError(f"{value!r} is not a valid cron expression")
    try:
        cron.croniter(value, datetime(2000, 1, 1),
                      second_at_beginning=seconds_first).get_next(datetime)
    except cron.CroniterBadDateError:
        raise ValueError(f"{value!r} never fires (no such date)") from None
    return value


def cron_gap(value: str) -> float:
    """The shortest time between two firings of a (valid) cron expression, as seen over
    its next 50 firings from 2001-01-01 (UTC)."""
    seconds_first = len(value.split()) == 6
    times = croniter().croniter(value, datetime(2001, 1, 1),
                                second_at_beginning=seconds_first)
    stamps = [times.get_next(float) for _ in range(50)]
    return min(b - a for a, b in zip(stamps, stamps[1:], strict=False))


def no_control_characters(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters (newlines, tabs, ...)")
    return value


class PeriodicEntry(_Frozen):
    """One job dispatched on `cron` or `every`."""

    name: Annotated[str, Field(strict=True, pattern=NAME_PATTERN)]  # required
    job: Annotated[str, Field(strict=True, min_length=1, max_length=200)]  # registered name
    args: list[Any] = []  # positional arguments (JSON values)
    kwargs: dict[str, Any] = {}  # keyword arguments (JSON values)
    queue: QueueName | None = None  # default: the job's declared queue, else `default`
    cron: Annotated[str, Field(strict=True)] | None = None  # 5 fields, or 6 (seconds first)
    every: Annotated[str, Field(strict=True)] | None = None  # 30s, 5m, 1h, 1d
    timezone: Annotated[str, Field(strict=True)] | None = None  # default: the program's
    catch_up: Annotated[bool, Field(strict=True)] = False  # fire one missed due time at start
    overlap: Annotated[bool, Field(strict=True)] = True  # false: skip while the last runs
    jitter: Seconds = 0.0  # spread each firing over up to this many seconds

    _cron_valid = field_validator("cron")(check_cron)
    _job_printable = field_validator("job")(no_control_characters)
    _timezone_known = field_validator("timezone")(check_timezone)

    @field_validator("every")
    @classmethod
    def _every_valid(cls, value: str) -> str:
        every_seconds(value)
        return value

    @field_validator("args", "kwargs")
    @classmethod
    def _json_values(cls, value: Any) -> Any:
        try:
            encoded = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must hold JSON values only (strings, numbers, true/false, "
                             f"null, lists, mappings): {exc}") from None
        if len(encoded) > MAX_ARGUMENTS_JSON:
            raise ValueError(f"is {len(encoded)} characters as JSON, more than "
                             f"{MAX_ARGUMENTS_JSON}")
        return value

    @field_validator("kwargs")
    @classmethod
    def _not_dispatch_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        if any(key in value for key in RESERVED_KWARGS):
            raise ValueError("queue, delay, connection and after_commit are dispatch "
                             "options, not keyword arguments")
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> PeriodicEntry:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of cron: or every:")
        gap = self.interval if self.interval is not None else cron_gap(self.cron or "")
        if self.jitter >= gap:
            raise ValueError(f"jitter must be less than the time between firings "
                             f"({gap:g} s), got {self.jitter:g}")
        return self

    @property
    def interval(self) -> float | None:
        """`every` in seconds, None for a cron entry."""
        return every_seconds(self.every) if self.every is not None else None

    @property
    def schedule_text(self) -> str:
        return f"every {self.every}" if self.every is not None else f"cron {self.cron}"


class PeriodicProgram(_ProgramBase):
    """`periodic:` - the master dispatches these entries' jobs itself (no processes)."""

    numprocs: Annotated[int, Field(strict=True, ge=0, le=0)] = 0  # never any process
    periodic: tuple[PeriodicEntry, ...]  # required, 1 to MAX_ENTRIES entries
    stopwaitsecs: PositiveSeconds = 1.0  # unused: no process to stop
    autoscale: None = None  # always None: no processes to scale

    @property
    def kind(self) -> str:
        return "periodic"

    @field_validator("periodic")
    @classmethod
    def _unique_names(cls, value: tuple[PeriodicEntry, ...]) -> tuple[PeriodicEntry, ...]:
        if not 1 <= len(value) <= MAX_ENTRIES:
            raise ValueError(f"must list 1 to {MAX_ENTRIES} entries, got {len(value)}")
        seen: set[str] = set()
        for entry in value:
            if entry.name in seen:
                raise ValueError(f"duplicate entry name {entry.name!r}")
            seen.add(entry.name)
        return value
