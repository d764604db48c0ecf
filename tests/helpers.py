"""Polling helpers (tests wait for conditions with a deadline, never a fixed sleep) and a
look at a queue's ready list."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import psutil
import redis

from supervisor_q.queue.keys import QueueKeys

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               message: str = "") -> T:
    """Call predicate until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


def stays(predicate: Callable[[], object], seconds: float = 1.5) -> None:
    """Assert predicate holds for the whole period (for "nothing else happens" checks)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate()
        time.sleep(0.05)


def gone(pid: int) -> bool:
    """Whether process pid has exited (a zombie not reaped yet counts as gone). It may
    exit between the look at its pid and the look at its state: that is gone too."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def zombie(pid: int) -> bool:
    """Whether process pid has exited and its parent has not reaped it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def ready_ids(redis_url: str, queue: str = "default") -> list[str]:
    """The ids waiting in queue's ready list, oldest first."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return client.lrange(QueueKeys(queue).ready, 0, -1)
    finally:
        client.close()
