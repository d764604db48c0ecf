"""Alert conditions and their notifications, without I/O: which conditions are active,
which notification is due, the failure and timeout rates from the master's counters, and
the webhook body.

The rate limit, per condition: at most one "firing" (or "reminder") per period, however
often the condition flaps; a "cleared" only after a notified firing; a condition firing
again within the period of its last firing is not notified (suppressed) until that
period has passed, and then only if it still fires.

The master's alerting.py measures and feeds `AlertBook.update` a `Reading` per condition
on every check; it sends what comes back. Imports nothing of supervisor_q.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Literal

RATE_WINDOW = 60.0  # "per minute": finished jobs over the last 60 seconds
Event = Literal["firing", "reminder", "cleared"]


@dataclass(frozen=True)
class Reading:
    """One condition as measured now. cid names it (kind:subject[:master]); fleet: a
    queue condition every master sees alike, so only the one that claims it notifies."""

    cid: str
    kind: str  # queue_size | queue_wait | fatal | crash_loop | failures | timeouts
    subject: str  # the queue or program
    firing: bool
    text: str  # one line: what is wrong, or how it is now that it is not
    value: float
    threshold: float
    fleet: bool = False


@dataclass(frozen=True)
class Notification:
    event: Event
    reading: Reading

    @property
    def line(self) -> str:
        """The log line (also the webhook's `text`)."""
        head = {"firing": "ALERT", "reminder": "ALERT (still)", "cleared": "ALERT CLEARED"}
        return f"{head[self.event]} {self.reading.text}"

    def body(self, host: str, master: str) -> dict[str, Any]:
        """A Slack-compatible JSON body: `text`, plus the structured `alert`."""
        r = self.reading
        return {"text": f"[supervisor-q {host}] {self.line}",
                "alert": {"event": self.event, "state": "cleared" if self.event == "cleared"
                          else "firing", "condition": r.kind, "subject": r.subject,
                          "id": r.cid, "value": r.value, "threshold": r.threshold,
                          "host": host, "master": master,
                          "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}


@dataclass
class AlertBook:
    """Notified conditions not yet cleared (active), when each condition last had a
    firing notification (fired, monotonic seconds, kept across a clear for one period)."""

    active: dict[str, float] = field(default_factory=dict)
    last: dict[str, Reading] = field(default_factory=dict)  # cid -> its latest firing reading
    fired: dict[str, float] = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        """What is wrong now, one line per active condition."""
        return sorted(reading.text for reading in self.last.values())

    def update(self, readings: list[Reading], now: float, period: float) -> list[Notification]:
        """The notifications due now: a condition that starts firing (unless it had a
        firing less than a period ago), one still firing a period after its last firing,
        and a notified one that stopped. A condition with no reading this time (not
        measured: e.g. Redis away) keeps its state."""
        self.fired = {c: t for c, t in self.fired.items() if now - t < period}
        due: list[Notification] = []
        for reading in readings:
            cid = reading.cid
            if reading.firing:
                self.last[cid] = reading
                if cid not in self.fired:  # none within the period: notify
                    due.append(Notification("reminder" if cid in self.active else "firing",
                                            reading))
                    self.active[cid] = self.fired[cid] = now
            else:
                self.last.pop(cid, None)  # a suppressed re-fire ends silently
                if self.active.pop(cid, None) is not None:
                    due.append(Notification("cleared", reading))
        return due


    def retire(self, seen: set[str]) -> list[Notification]:
        """Active conditions not in seen are no longer checked (program removed, threshold
        unset): each gets its "cleared" notification."""
        due = []
        for cid in [c for c in self.last if c not in seen]:
            last = self.last.pop(cid)
            if self.active.pop(cid, None) is not None:
                due.append(Notification("cleared", replace(
                    last, firing=False, text=f"{last.text}: no longer checked")))
        return due


@dataclass
class RateWindow:
    """Jobs per minute from a cumulative count: its increase over the last RATE_WINDOW
    seconds (since the first sample when younger; counts start at 0 with the master)."""

    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, now: float, total: int) -> int:
        self.samples.append((now, total))
        while len(self.samples) > 1 and self.samples[1][0] <= now - RATE_WINDOW:
            self.samples.popleft()
        first_at, first = self.samples[0]
        return total - first if first_at <= now - RATE_WINDOW else total


@dataclass
class CrashLog:
    """Crash restarts of one program, newest last, for the crash-loop condition."""

    times: deque[float] = field(default_factory=lambda: deque(maxlen=1000))

    def within(self, now: float, seconds: float) -> int:
        return sum(1 for t in self.times if t > now - seconds)
