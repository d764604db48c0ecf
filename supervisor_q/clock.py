"""The only place supervisor-q reads the time.

`Clock.monotonic()` is for deadlines, timeouts and cooldowns (immune to wall-clock steps);
`Clock.now()` is the timezone-aware UTC wall clock, used only for cron schedules and for
timestamps shown to people. Everything else receives a clock (or a value read from one), so
tests drive time with `FakeClock` instead of sleeping.

This module imports nothing from the supervisor_q package.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    """The real clock."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences are meaningful."""
        return time.monotonic()

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware, in UTC."""
        return datetime.now(UTC)


class FakeClock(Clock):
    """A clock for tests: time moves only when the test says so."""

    def __init__(self, start: datetime, monotonic_start: float = 1000.0) -> None:
        self._now = _aware_utc(start)
        # Not 0.0: code that treats 0 or None as "never" must not be fooled by a fake clock.
        self._monotonic = monotonic_start

    def monotonic(self) -> float:
        return self._monotonic

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass: both the wall clock and the monotonic clock move forward."""
        if seconds < 0:
            raise ValueError(f"time only moves forward; advance({seconds}) is negative")
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds

    def set(self, when: datetime) -> None:
        """Step the wall clock to `when` (forwards or backwards), like NTP or an operator would.

        The monotonic clock does not move: a wall-clock step is not elapsed time. Use
        `advance()` to model time passing.
        """
        self._now = _aware_utc(when)


def _aware_utc(when: datetime) -> datetime:
    # A naive datetime is ambiguous (local? UTC?); refusing it keeps every test explicit.
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"FakeClock needs a timezone-aware datetime, got naive {when!r}")
    return when.astimezone(UTC)
