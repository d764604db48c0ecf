"""Helpers for the dashboard tests: an app over a test database, failed jobs, a fake master
heartbeat (the registry's own beat, with a status shaped like a master's)."""

from __future__ import annotations

import re

import redis
from starlette.testclient import TestClient

from supervisor_q.fleet import registry
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.web.app import build_app
from supervisor_q.web.security import Guard


def client_for(url: str, token: str | None = None) -> tuple[TestClient, RedisQueue]:
    queue = RedisQueue(redis.Redis.from_url(url))
    return TestClient(build_app(queue, Guard(token)), base_url="http://127.0.0.1:8787",
                      follow_redirects=False), queue


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', html).group(1)


def failed_job(queue: RedisQueue, name: str, queue_name: str = "default",
               exception: str = "Traceback: boom") -> str:
    """Push, reserve and fail one job; its id."""
    p = payloads.build(name, queue_name, [1], {})
    queue.push(queue_name, p.id, payloads.encode(p))
    [reserved] = queue.reserve(queue_name, default_timeout=60)[1].jobs
    record = {"id": p.id, "job": name, "queue": queue_name, "args": [1], "kwargs": {},
              "attempts": 1, "reason": exception.splitlines()[0], "exception": exception,
              "payload": reserved.payload}
    assert queue.fail(queue_name, p.id, record)
    return p.id


def fake_master(queue: RedisQueue, master_id: str, program: str) -> None:
    status = {"host": "h1", "pid": 1, "version": "0", "paused_queues": [],
              "redis_error": None, "master": {},
              "programs": [{"name": program, "kind": "worker", "target": 2,
                            "target_reason": "numprocs", "state": "running", "paused": False,
                            "queues": ["default"], "next_transition": None,
                            "processes": [{"name": f"{program}:0", "pid": 10, "slot": 0,
                                           "state": "running", "uptime": 5.0,
                                           "jobs_done": 3, "job": None, "rss": None}]}]}
    assert registry.beat(queue.client, master_id, status, [], 30)
