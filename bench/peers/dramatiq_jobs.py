"""Dramatiq's benchmark jobs (bench/marks.py has the contract), Redis broker, default
middleware, no retries (the jobs do not fail)."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench import marks

broker = RedisBroker(url=marks.URL)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    pass


@dramatiq.actor(queue_name="bench", max_retries=0)
def mark(key: str) -> None:
    marks.mark(key)


@dramatiq.actor(queue_name="bench", max_retries=0)
def sleep10() -> None:
    marks.sleep10()


@dramatiq.actor(queue_name="bench", max_retries=0)
def lat(dispatched: float) -> None:
    marks.lat(dispatched)


class Client:
    def __init__(self) -> None:
        self.jobs = {"noop": noop, "mark": mark, "sleep10": sleep10, "lat": lat}

    def enqueue(self, name: str, *args: object) -> None:
        self.jobs[name].send(*args)
