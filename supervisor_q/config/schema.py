"""The program-file schema: frozen pydantic models, their defaults and every validation rule.

`loading.py` reads YAML and `messages.py` turns validation errors into
"<path>: <key>: <problem>" lines; this module only says what a valid program is.
Defaults are documented next to each field.
Durations are seconds (int or float), sizes are MB, counts are ints; booleans are never
accepted where a number is expected (YAML's `yes` must not become 1).

This module imports nothing from the supervisor_q package but config/logkeys.py (the log
keys' mixin).
"""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from supervisor_q.config.logkeys import LogKeys
from supervisor_q.config.substitute import check_placeholders
from supervisor_q.config.validators import (
    check_timezone,
    croniter,
    normalise_signal,
    setup_hook,
    split_list,
    uid_text,
    umask_value,
    user_exists,
)

if TYPE_CHECKING:
    from supervisor_q.config.periodic import PeriodicProgram  # noqa: F401 - the alias

# A reservation must outlive the job's hard timeout by this much (ARCHITECTURE.md's rule 1).
# A copy of backend.RESERVATION_MARGIN (this module imports nothing); a test keeps them equal.
RESERVATION_MARGIN = 5.0
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
QUEUE_PATTERN = r"^[A-Za-z0-9_.:-]+$"  # a copy of queue/keys.QUEUE_PATTERN (a test checks)
MODULE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
# Fields that only change how many children run: a reload rescales instead of replacing.
# Changing only these keeps the program's children (resize or re-check, no replacement).
# priority, group and autostart only order, address or hold back a pool: no child changes.
SCALE_FIELDS = frozenset({"numprocs", "schedule", "timezone", "autoscale", "monitor",
                          "alerts", "priority", "group", "autostart", "balance",
                          "min_per_queue"})

# Most children one program may run (numprocs, schedule, autoscale, `scale`, TTIN): each
# child is a forked Python process (~30-100 MB), so 1000 is already more than one machine
# should hold; a typo (100000, an extra zero) would otherwise fork the host to its knees.
MAX_NUMPROCS = 1000

# strict=True: no str -> number and no bool -> number coercion; floats still accept ints.
Count = Annotated[int, Field(strict=True, ge=0)]
Procs = Annotated[int, Field(strict=True, ge=0, le=MAX_NUMPROCS)]  # a number of children
PositiveProcs = Annotated[int, Field(strict=True, ge=1, le=MAX_NUMPROCS)]
PositiveCount = Annotated[int, Field(strict=True, ge=1)]
MAX_PREFETCH = 1000  # jobs one reserve may take: more is a typo, not a setting
Seconds = Annotated[float, Field(strict=True, ge=0)]
PositiveSeconds = Annotated[float, Field(strict=True, gt=0)]
Megabytes = Annotated[int, Field(strict=True, ge=0)]
QueueName = Annotated[str, Field(strict=True, pattern=QUEUE_PATTERN)]
ModuleName = Annotated[str, Field(strict=True, pattern=MODULE_PATTERN)]

SetupHook = Annotated[str, Field(strict=True), AfterValidator(setup_hook)]
ExitCode = Annotated[int, Field(strict=True, ge=0, le=255)]


class KeyedError(ValueError):
    """A cross-field problem raised by a model validator, carrying the key it belongs to."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScheduleRule(_Frozen):
    """`{cron: "0 9 * * 1-5", numprocs: 8}`: from this firing on, run this many children."""

    cron: Annotated[str, Field(strict=True)]  # 5 fields or @daily-style, in `timezone`
    numprocs: Procs

    @field_validator("cron")
    @classmethod
    def _cron_fires(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value.startswith("@") and len(value.split()) != 5:
            raise ValueError(
                f"must have 5 fields (minute hour day-of-month month day-of-week), "
                f"got {len(value.split())} in {value!r}"
            )
        cron = croniter()
        if not cron.croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression")
        try:  # "0 0 31 2 *" parses but never fires; say so now rather than at 09:00.
            cron.croniter(value, datetime(2000, 1, 1)).get_next(datetime)
        except cron.CroniterBadDateError:
            raise ValueError(f"{value!r} never fires (no such date)") from None
        return value


class AutoscaleConfig(_Frozen):
    """Load-driven pool size between `min` and `max` (see master/schedule.py: autoscale)."""

    min: Procs = 1  # smallest pool; a firing schedule rule replaces it as the floor
    max: PositiveProcs  # largest pool, also above any schedule size (required)
    by: Literal["size", "wait"] = "size"  # queue length, or oldest job's wait
    cooldown: Seconds = 10.0  # seconds between two changes
    max_shift: PositiveCount = 1  # processes added or removed per change
    target_wait: PositiveSeconds | None = None  # seconds a job may wait; sizes by runtimes
    # total across every master autoscaling the same queues (agreed through Redis)
    fleet_max: PositiveProcs | None = None

    @field_validator("max")
    @classmethod
    def _max_at_least_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if low is not None and value < low:
            raise ValueError(f"must be >= min ({low}), got {value}")
        return value

    @field_validator("fleet_max")
    @classmethod
    def _fleet_max_at_least_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min")
        if value is not None and low is not None and value < low:
            raise ValueError(f"must be >= min ({low}), got {value}")
        return value


class MonitorConfig(_Frozen):
    """Alert thresholds the master checks for the program's queues (logged as warnings)."""

    max_size: PositiveCount | None = None  # alert when more jobs than this wait
    max_wait: PositiveSeconds | None = None  # alert when the oldest job waited longer
    every: PositiveSeconds = 10.0  # seconds between two checks


class CrashLoop(_Frozen):
    """A crash loop: `restarts` crash restarts of one program within `within` seconds."""

    restarts: PositiveCount = 5
    within: PositiveSeconds = 60.0


class AlertRules(_Frozen):
    """`alerts:` thresholds (master/alerting.py). A program's keys override those of the
    settings file's `alerts:` one by one; None = not set here (inherited, else off)."""

    max_size: PositiveCount | None = None  # more ready jobs than this in a queue
    max_wait: PositiveSeconds | None = None  # the oldest ready job waited longer (s)
    fatal: Annotated[bool, Field(strict=True)] | None = None  # a child FATAL (default on)
    crash_loop: CrashLoop | None = None  # N crash restarts within M seconds
    failures_per_minute: PositiveCount | None = None  # failed jobs of a queue, last 60 s
    timeouts_per_minute: PositiveCount | None = None  # timed-out jobs of a queue, last 60 s


class _ProgramBase(LogKeys, _Frozen):
    """Keys shared by both kinds of program (the log keys: logkeys.LogKeys)."""

    name: Annotated[str, Field(strict=True, pattern=NAME_PATTERN)]  # default: the file stem
    numprocs: Procs = 1  # children to keep running (0 = defined but stopped)
    # {process_num} of emails#1 (Supervisor counts from numprocs_start, 0 by default; an
    # imported supervisord.conf keeps its numbering through this key)
    numprocs_start: Annotated[int, Field(strict=True, ge=0, le=1_000_000)] = 1
    startsecs: Seconds = 1.0  # a child that lives this long counts as started (RUNNING)
    startretries: Count = 3  # quick failures in a row before FATAL
    schedule: tuple[ScheduleRule, ...] = ()  # cron rules; the latest at or before now wins
    timezone: Annotated[str, Field(strict=True)] = "UTC"  # IANA zone the cron rules use
    # extra env for children
    environment: dict[str, Annotated[str, Field(strict=True),
                               AfterValidator(check_placeholders)]] = {}
    directory: Annotated[str, Field(strict=True, min_length=1)] | None = None  # child cwd
    alerts: AlertRules | None = None  # alert thresholds (master/alerting.py)
    # Supervisor's keys: run children as this user (master as root only), their umask,
    # start order (lower first, stop in reverse), held back until `start`, addressed by
    # `GROUP:*` in the control commands.
    user: Annotated[str, Field(strict=True, min_length=1)] | None = None
    umask: Annotated[int, Field(strict=True, ge=0, le=0o777)] | None = None
    priority: Annotated[int, Field(strict=True)] = 999
    autostart: Annotated[bool, Field(strict=True)] = True
    group: Annotated[str, Field(strict=True, pattern=NAME_PATTERN)] | None = None

    _timezone_known = field_validator("timezone")(check_timezone)
    _umask_octal = field_validator("umask", mode="before")(umask_value)
    _user_known = field_validator("user")(user_exists)
    _uid_as_text = field_validator("user", mode="before")(uid_text)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def process_num(self, slot: int) -> int:
        """The {process_num} of the child in slot N (emails#N, from 1)."""
        return self.numprocs_start + slot - 1


class WorkerProgram(_ProgramBase):
    """`queues:` - children run supervisor-q's worker loop on these queues."""

    queues: Annotated[tuple[QueueName, ...], Field(min_length=1)]  # priority order (required)
    imports: tuple[ModuleName, ...] = Field(default=(), alias="import")  # modules with @job
    setup: SetupHook | None = None  # called in each child before `import:` (django:setup)
    # import setup + import once in a zygote child and fork the pool from it (master/zygote.py)
    preload: Annotated[bool, Field(strict=True)] = False
    max_jobs: Count = 0  # recycle a child after N jobs (0 = never)
    max_time: Seconds = 0.0  # recycle a child after N seconds, between jobs (0 = never)
    timeout: PositiveSeconds = 60.0  # hard limit for one job
    tries: PositiveCount = 1  # attempts before a job is failed (a job may override)
    backoff: Annotated[tuple[Count, ...], Field(min_length=1)] = (0,)  # retry delays
    memory: Megabytes = 128  # soft RSS limit, checked between jobs (0 = off)
    memory_hard: Annotated[int, Field(strict=True, gt=0)] | None = None  # MB, kill mid-job
    sleep: PositiveSeconds = 3.0  # longest idle wait for a job
    rest: Seconds = 0.0  # pause between two jobs
    prefetch: Annotated[int, Field(strict=True, ge=1, le=MAX_PREFETCH)] = 1  # reserved at once
    keep_jobs: Seconds = 3600.0  # a done job stays findable (0 = not kept)
    keep_jobs_max: PositiveCount = 10_000  # most done jobs kept per queue
    retry_after: PositiveSeconds | None = None  # reservation time; default from timeout
    stopwaitsecs: Seconds = Field(default=None, validate_default=True)  # default timeout + 10
    stopsignal: Literal["TERM"] = "TERM"  # fixed: finish the current job, then exit
    autoscale: AutoscaleConfig | None = None  # load-driven size instead of numprocs
    monitor: MonitorConfig | None = None  # alias of alerts: {max_size, max_wait}
    # several queues: false = each child takes all; simple / auto = one queue per child,
    # split evenly / by waiting jobs (master/balance.py)
    balance: Literal[False, "simple", "auto"] = False
    min_per_queue: Count = 1  # balance: auto keeps this many children on every queue

    _queue_list = field_validator("queues", "imports", mode="before")(split_list)

    @property
    def kind(self) -> Literal["worker"]:
        return "worker"

    @field_validator("queues")
    @classmethod
    def _unique_queues(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for queue in value:
            if queue in seen:
                raise ValueError(f"duplicate queue {queue!r}")
            seen.add(queue)
        return value

    @field_validator("backoff", mode="before")
    @classmethod
    def _backoff_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("memory_hard")
    @classmethod
    def _hard_above_soft(cls, value: int | None, info: ValidationInfo) -> int | None:
        soft = info.data.get("memory")
        if value is not None and soft and value <= soft:
            raise ValueError(f"must be > memory ({soft}), got {value}")
        return value

    @field_validator("retry_after")
    @classmethod
    def _reservation_outlives_job(cls, value: float | None, info: ValidationInfo) -> float | None:
        timeout = info.data.get("timeout")
        if value is not None and timeout is not None and value <= timeout + RESERVATION_MARGIN:
            raise ValueError(
                f"must be greater than timeout + {RESERVATION_MARGIN:g} "
                f"({timeout + RESERVATION_MARGIN:g}), got {value:g}: a job still running when "
                f"its reservation expires is given to another worker and runs twice; "
                f"raise retry_after or remove it (the default follows timeout)"
            )
        return value

    @field_validator("stopwaitsecs", mode="before")
    @classmethod
    def _default_stopwait(cls, value: Any, info: ValidationInfo) -> Any:
        # A graceful stop must not kill a job that is within its timeout, so by default
        # wait for the longest job plus a margin. If timeout is invalid it is reported anyway.
        if value is None:
            return info.data.get("timeout", 60.0) + 10.0
        return value

    @field_validator("stopsignal", mode="before")
    @classmethod
    def _term_only(cls, value: Any) -> Any:
        if normalise_signal(value) != "TERM":
            raise ValueError(
                f"workers always stop with TERM (finish the current job, then exit), "
                f"got {value!r}; remove this key"
            )
        return "TERM"

    @field_validator("autoscale")
    @classmethod
    def _schedule_within_max(
        cls, value: AutoscaleConfig | None, info: ValidationInfo
    ) -> AutoscaleConfig | None:
        for index, rule in enumerate(info.data.get("schedule", ())):
            if value is not None and rule.numprocs > value.max:
                raise ValueError(
                    f"max ({value.max}) is below schedule.{index}.numprocs ({rule.numprocs}); "
                    f"a schedule rule sets the autoscale floor, so raise max or lower the rule"
                )
        return value


class CommandProgram(_ProgramBase):
    """`command:` - any executable, supervised Supervisor-style."""

    # split with shlex, no shell (required)
    command: Annotated[str, Field(strict=True), AfterValidator(check_placeholders)]
    stopsignal: Literal["TERM", "INT", "QUIT", "HUP", "KILL", "USR1", "USR2"] = "TERM"
    stopwaitsecs: Seconds = 10.0  # grace after stopsignal before SIGKILL
    autorestart: bool | Literal["unexpected"] = True  # restart after any / unexpected exit
    exitcodes: tuple[ExitCode, ...] = (0,)  # "expected" exit codes for autorestart: unexpected
    # `restart-workers` replaces its processes too (TERM, then a new one), as workers are
    restart_on_deploy: Annotated[bool, Field(strict=True)] = False
    autoscale: None = None  # always None: only worker programs can autoscale
    preload: bool = False  # always False: only worker programs can preload

    _signal_name = field_validator("stopsignal", mode="before")(normalise_signal)

    @property
    def kind(self) -> Literal["command"]:
        return "command"

    @property
    def argv(self) -> tuple[str, ...]:
        return tuple(shlex.split(self.command))

    @field_validator("command")
    @classmethod
    def _command_splits(cls, value: str) -> str:
        try:
            argv = shlex.split(value)
        except ValueError as error:
            raise ValueError(f"cannot be split into arguments: {error}") from None
        if not argv:
            raise ValueError("must not be empty")
        return value

    @field_validator("autorestart", mode="before")
    @classmethod
    def _autorestart_choice(cls, value: Any) -> Any:
        if value is True or value is False or value == "unexpected":
            return value
        raise ValueError(f"must be true, false or 'unexpected', got {value!r}")

    @field_validator("exitcodes", mode="before")
    @classmethod
    def _exitcode_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("preload", mode="before")
    @classmethod
    def _no_preload(cls, value: Any) -> Any:
        if value is not False:
            raise ValueError("only worker programs (queues:) can preload; remove this key")
        return value

    @field_validator("autoscale", mode="before")
    @classmethod
    def _no_autoscale(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("only worker programs (queues:) can autoscale")
        return value


# PeriodicProgram (config/periodic.py, which builds on _ProgramBase) is the third kind.
ProgramConfig: TypeAlias = "WorkerProgram | CommandProgram | PeriodicProgram"
