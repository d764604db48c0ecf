"""RQ's benchmark jobs (bench/marks.py has the contract). Enqueued by function
reference with RQ's defaults (pickle serializer, results kept 500 s)."""

from __future__ import annotations

from redis import Redis
from rq import Queue

from bench import marks


def noop() -> None:
    pass


def mark(key: str) -> None:
    marks.mark(key)


def sleep10() -> None:
    marks.sleep10()


def lat(dispatched: float) -> None:
    marks.lat(dispatched)


class Client:
    def __init__(self) -> None:
        self.queue = Queue("bench", connection=Redis.from_url(marks.URL))
        self.jobs = {"noop": noop, "mark": mark, "sleep10": sleep10, "lat": lat}

    def enqueue(self, name: str, *args: object) -> None:
        self.queue.enqueue(self.jobs[name], *args)
