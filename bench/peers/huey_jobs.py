"""Huey's benchmark jobs (bench/marks.py has the contract). RedisHuey with its default
blocking dequeue (BRPOP); results off, since the benchmark jobs return nothing."""

from __future__ import annotations

from huey import RedisHuey

from bench import marks

huey = RedisHuey("bench", url=marks.URL, results=False)


@huey.task()
def noop() -> None:
    pass


@huey.task()
def mark(key: str) -> None:
    marks.mark(key)


@huey.task()
def sleep10() -> None:
    marks.sleep10()


@huey.task()
def lat(dispatched: float) -> None:
    marks.lat(dispatched)


class Client:
    def __init__(self) -> None:
        self.jobs = {"noop": noop, "mark": mark, "sleep10": sleep10, "lat": lat}

    def enqueue(self, name: str, *args: object) -> None:
        self.jobs[name](*args)
