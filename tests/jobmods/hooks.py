"""Event callbacks for test_events: each leaves a trace in Redis."""

from __future__ import annotations

from supervisor_q import events
from supervisor_q.jobs.dispatching import queue_for
from tests.jobmods.basic import record


@events.before
def on_before(event: events.JobEvent) -> None:
    record(kind="event", event="before", job=event.name, value=event.payload.args)


@events.after
def on_after(event: events.JobEvent) -> None:
    error = type(event.exception).__name__ if event.exception else None
    record(kind="event", event="after", job=event.name, error=error)


@events.failing
def on_failing(event: events.JobEvent) -> None:
    record(kind="event", event="failing", job=event.name, reason=event.reason)


@events.looping
def on_looping() -> None:
    queue_for().client.incr("looping")


@events.before
def broken_hook(event: events.JobEvent) -> None:
    raise RuntimeError("a broken hook must not break the job")
