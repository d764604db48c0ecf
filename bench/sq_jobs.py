"""supervisor-q's benchmark jobs (see bench/marks.py for the contract)."""

from __future__ import annotations

from bench import marks
from supervisor_q import job


@job(queue="bench")
def noop() -> None:
    pass


@job(queue="bench")
def mark(key: str) -> None:
    marks.mark(key)


@job(queue="bench")
def sleep10() -> None:
    marks.sleep10()


@job(queue="bench")
def lat(dispatched: float) -> None:
    marks.lat(dispatched)


class Client:
    """The agent's view: queue a job by short name with supervisor-q's dispatch()."""

    def __init__(self) -> None:
        self.jobs = {"noop": noop, "mark": mark, "sleep10": sleep10, "lat": lat}

    def enqueue(self, name: str, *args: object) -> None:
        self.jobs[name].dispatch(*args, connection=marks.URL)
