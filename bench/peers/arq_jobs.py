"""arq's benchmark jobs (bench/marks.py has the contract). arq runs coroutines; these
do their (blocking) work inline, like the other systems' jobs. arq defaults otherwise
(max_jobs=10 concurrent jobs per process, poll_delay=0.5 s, results kept 1 h)."""

from __future__ import annotations

import asyncio

from arq import create_pool
from arq.connections import RedisSettings

from bench import marks

QUEUE = "bench"


async def noop(ctx: dict) -> None:
    pass


async def mark(ctx: dict, key: str) -> None:
    marks.mark(key)


async def sleep10(ctx: dict) -> None:
    marks.sleep10()


async def lat(ctx: dict, dispatched: float) -> None:
    marks.lat(dispatched)


class WorkerSettings:
    functions = [noop, mark, sleep10, lat]
    redis_settings = RedisSettings.from_dsn(marks.URL)
    queue_name = QUEUE


class Client:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(
            create_pool(RedisSettings.from_dsn(marks.URL), default_queue_name=QUEUE))

    def enqueue(self, name: str, *args: object) -> None:
        self.loop.run_until_complete(self.pool.enqueue_job(name, *args))

    def enqueue_many(self, name: str, count: int) -> None:
        """One event loop run for the batch, as an async producer would do it."""
        async def push() -> None:
            for _ in range(count):
                await self.pool.enqueue_job(name)
        self.loop.run_until_complete(push())
