"""When a periodic entry is due, and what to do about it: pure functions of (entry, now).

Times are epoch seconds of the Redis server's clock (TIME), so every master sharing
Redis sees the same due times whatever its own clock says.
- `every: N`: due at every multiple of N seconds since the epoch (UTC), so all masters
  agree without talking; `every: 1h` fires on the hour.
- `cron:`: the firings of master/schedule.py (its DST policy: a wall time skipped by
  spring-forward fires once at the end of the gap, a repeated one once, the first time).
- `jitter: S`: a due time's firing moment is `due + offset`, the offset in [0, S) taken
  from a hash of (program, entry, due time), the same on every master.
Decision for the latest due time whose moment has come (`decide`):
- already handled (at or before the entry's last handled due time): nothing;
- its moment is at most LATE seconds ago: fire it (a running master fires within a tick);
- older and never handled before (a new entry, a first start): record it, fire nothing;
- older (every master was down, or the program paused): missed: `catch_up: false`
  records it as skipped, `catch_up: true` fires it, one due time only, never all.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from supervisor_q.master.schedule import last_cron_firing, next_cron_firing

LATE = 5.0  # seconds after its moment a due time still fires as on time
BACK_STEPS = 4  # due times looked back over when jitter pushes the moment past now

Action = Literal["wait", "fire", "catch_up", "skip_missed", "start"]


class Entry(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def cron(self) -> str | None: ...
    @property
    def interval(self) -> float | None: ...
    @property
    def jitter(self) -> float: ...
    @property
    def catch_up(self) -> bool: ...


@dataclass(frozen=True)
class Due:
    at: float  # the due time (epoch seconds)
    moment: float  # when it fires: at + the jitter offset


def offset(program: str, entry: Entry, at: float) -> float:
    """The jitter offset of one due time, in [0, entry.jitter): the same on every master."""
    if entry.jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{program}\0{entry.name}\0{at:.6f}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * entry.jitter


def _previous(entry: Entry, zone: str, before: float) -> float | None:
    """The latest due time at or before `before`."""
    if entry.interval is not None:
        return math.floor(before / entry.interval) * entry.interval
    assert entry.cron is not None
    fired = last_cron_firing(entry.cron, zone, datetime.fromtimestamp(before, UTC))
    return fired.timestamp() if fired is not None else None


def _following(entry: Entry, zone: str, after: float) -> float | None:
    """The first due time strictly after `after`."""
    if entry.interval is not None:
        return (math.floor(after / entry.interval) + 1) * entry.interval
    assert entry.cron is not None
    fired = next_cron_firing(entry.cron, zone, datetime.fromtimestamp(after, UTC))
    return fired.timestamp() if fired is not None else None


def latest(program: str, entry: Entry, zone: str, now: float) -> Due | None:
    """The latest due time whose firing moment is at or before now."""
    at = _previous(entry, zone, now)
    for _ in range(BACK_STEPS):
        if at is None:
            return None
        moment = at + offset(program, entry, at)
        if moment <= now:
            return Due(at, moment)
        at = _previous(entry, zone, at - 1e-3)
    return None


def upcoming(program: str, entry: Entry, zone: str, now: float) -> Due | None:
    """The first due time whose firing moment is after now (for `periodic list`)."""
    at = _previous(entry, zone, now)
    at = at if at is not None else now
    for _ in range(BACK_STEPS + 2):
        moment = at + offset(program, entry, at)
        if moment > now:
            return Due(at, moment)
        following = _following(entry, zone, at)
        if following is None:
            return None
        at = following
    return None


def decide(due: Due | None, last_due: float | None, now: float, catch_up: bool) -> Action:
    """What to do with the latest due time (see the module's docstring)."""
    if due is None or (last_due is not None and due.at <= last_due + 1e-6):
        return "wait"
    if now - due.moment <= LATE:
        return "fire"
    if last_due is None:
        return "start"
    return "catch_up" if catch_up else "skip_missed"


def iso(epoch: object) -> str | None:
    """Epoch seconds as ISO 8601 UTC, to the millisecond (None, or no number: None)."""
    if not isinstance(epoch, int | float) or isinstance(epoch, bool) or not math.isfinite(epoch):
        return None
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = ["LATE", "Due", "decide", "iso", "latest", "offset", "upcoming"]
