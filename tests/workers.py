"""Start real `supervisor-q work` processes for the workflow and control tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import redis

FLOWS = "tests.jobmods.flows"


def start(redis_url: str, *flags: str, queues: str = "default",
          env: dict[str, str] | None = None, imports: str = FLOWS,
          new_session: bool = False) -> subprocess.Popen:
    """`supervisor-q work --quiet` on queues; new_session: in a session of its own, so a
    signal to its process group reaches the guard and the worker alike."""
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work",
         "--queue", queues, "--import", imports, "--sleep", "0.2", "--quiet", *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=new_session)


@contextmanager
def running(redis_url: str, count: int = 1, *flags: str, queues: str = "default",
            env: dict[str, str] | None = None) -> Iterator[list[subprocess.Popen]]:
    """count workers for the duration of the block; stopped (TERM, then KILL) after."""
    procs = [start(redis_url, *flags, queues=queues, env=env) for _ in range(count)]
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def results(redis_url: str, kind: str | None = None) -> list[dict]:
    client = redis.Redis.from_url(redis_url)
    found = [json.loads(r) for r in client.lrange("results", 0, -1)]
    client.close()
    return [r for r in found if kind is None or r.get("kind") == kind]


def tagged(redis_url: str, kind: str, tag: str) -> list[dict]:
    """The results of one kind ("start", "done", ...) whose value is tag."""
    return [r for r in results(redis_url, kind) if r["value"] == tag]


def wait_idle(redis_url: str, count: int, timeout: float = 15.0) -> None:
    """Until count workers of this test's database are blocked waiting for jobs, so a
    test can dispatch to several ready workers at the same moment."""
    from tests.helpers import wait_until

    client = redis.Redis.from_url(redis_url)
    db = client.connection_pool.connection_kwargs.get("db", 0)

    def idle() -> bool:
        found = client.client_list()
        return sum(1 for c in found if c.get("cmd") == "blpop"
                   and int(c.get("db", -1)) == int(db)) >= count

    try:
        wait_until(idle, timeout=timeout, message=f"{count} idle workers")
    finally:
        client.close()
