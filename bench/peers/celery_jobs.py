"""Celery's benchmark jobs (bench/marks.py has the contract), Redis broker, no result
backend. Celery's defaults otherwise (early acks, prefetch multiplier 4)."""

from __future__ import annotations

from celery import Celery

from bench import marks

app = Celery("bench", broker=marks.URL)
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True, task_default_queue="bench")


@app.task(name="noop")
def noop() -> None:
    pass


@app.task(name="mark")
def mark(key: str) -> None:
    marks.mark(key)


@app.task(name="sleep10")
def sleep10() -> None:
    marks.sleep10()


@app.task(name="lat")
def lat(dispatched: float) -> None:
    marks.lat(dispatched)


class Client:
    def __init__(self) -> None:
        self.jobs = {"noop": noop, "mark": mark, "sleep10": sleep10, "lat": lat}

    def enqueue(self, name: str, *args: object) -> None:
        self.jobs[name].apply_async(args, queue="bench")
