"""Job events: before, after, failing and looping callbacks registered in code.

For logs, metrics and cleanup (close a DB transaction a job left open). A callback
that raises is logged and never changes the job's outcome or stops the worker.
Imports payload only.

    from supervisor_q import events

    @events.before
    def start_timer(event: events.JobEvent) -> None: ...
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from supervisor_q.queue.payload import Payload

log = logging.getLogger("supervisor_q.events")

F = TypeVar("F", bound=Callable[..., object])
KINDS = ("before", "after", "failing", "looping")


@dataclass(frozen=True)
class JobEvent:
    """What a callback learns: the job, and for after/failing how it ended."""

    id: str
    name: str
    queue: str
    attempts: int
    payload: Payload
    exception: BaseException | None = None  # after: what the attempt raised, if anything
    reason: str | None = None  # failing: why the job failed for good


class Events:
    """Callbacks by kind. One per process, like the job registry."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[..., object]]] = {k: [] for k in KINDS}

    def add(self, kind: str, fn: F) -> F:
        if kind not in self._callbacks:
            raise ValueError(f"unknown event {kind!r}; one of {', '.join(KINDS)}")
        if fn not in self._callbacks[kind]:
            self._callbacks[kind].append(fn)
        return fn

    def remove(self, kind: str, fn: Callable[..., object]) -> None:
        if fn in self._callbacks.get(kind, []):
            self._callbacks[kind].remove(fn)

    def clear(self) -> None:
        for callbacks in self._callbacks.values():
            callbacks.clear()

    def wants(self, kind: str) -> bool:
        """True when a callback is registered for kind (the worker skips building events
        nobody listens to)."""
        return bool(self._callbacks.get(kind))

    def registered(self, kind: str) -> list[Callable[..., object]]:
        """The live list of kind's callbacks (add, remove and clear change it in place):
        the worker looks at it before each job, without a call, to skip empty hooks."""
        return self._callbacks[kind]

    def fire(self, kind: str, *args: object) -> None:
        """Call every callback of kind; log (never raise) what they raise."""
        for fn in list(self._callbacks[kind]):
            try:
                fn(*args)
            except Exception:
                log.exception("%s event callback %r raised", kind, fn)


EVENTS = Events()


def before(fn: F) -> F:
    """Register fn(event) to run before each attempt of every job."""
    return EVENTS.add("before", fn)


def after(fn: F) -> F:
    """Register fn(event) to run after each attempt, whatever its outcome
    (event.exception holds what it raised, including a release or fail)."""
    return EVENTS.add("after", fn)


def failing(fn: F) -> F:
    """Register fn(event) to run when a job fails for good (event.reason says why)."""
    return EVENTS.add("failing", fn)


def looping(fn: F) -> F:
    """Register fn() to run in the worker loop before each look for a job."""
    return EVENTS.add("looping", fn)
