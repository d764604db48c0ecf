"""Test harness: a private Redis-compatible server per test process, a clean database per test.

No fakeredis and no mocks: every test talks to a real valkey-server (or redis-server)
started here on a unix socket in a temp dir.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from supervisor_q.queue.server import RedisServer
from tests.helpers import wait_until  # noqa: F401  (re-exported for tests)

# Never reused within a session: a straggling process of an earlier test cannot touch
# a later test's data.
_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One server for this test process (each xdist worker gets its own)."""
    with tempfile.TemporaryDirectory(prefix="sq-redis-") as tmp:
        server = RedisServer(data_dir=Path(tmp), persistent=True)
        server.start()
        try:
            yield server
        finally:
            server.stop()


class RedisHandle:
    """A test's view of the server: its URL, a client, and fault injection."""

    def __init__(self, server: RedisServer, db: int) -> None:
        self.server = server
        self.db = db

    @property
    def url(self) -> str:
        return f"unix://{self.server.unix_socket}?db={self.db}"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def restart(self) -> None:
        """Stop and start the server; data survives through the append-only file."""
        self.server.restart()

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[RedisHandle]:
    """A clean database of the session's server, for this test alone."""
    if not redis_server.alive():  # a fault-injection test may have left it stopped
        redis_server.start()
    handle = RedisHandle(redis_server, next(_database_numbers))
    client = handle.client()
    client.flushdb()
    client.close()
    yield handle


@pytest.fixture
def redis_url(redis_db: RedisHandle, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test database's URL, also exported as SUPERVISOR_Q_REDIS_URL for subprocesses."""
    monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", redis_db.url)
    return redis_db.url


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir: unix socket paths must stay under 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="sq-", dir="/tmp") as tmp:
        yield Path(tmp)


def pytest_configure(config: pytest.Config) -> None:
    # Subprocesses started by tests import the test job modules from here.
    root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p
    )


@pytest.fixture
def master_factory(short_tmp: Path, redis_url: str) -> Iterator:
    """make(programs, url=redis_url, **kw) -> a Master (tests/masters.py), each stopped
    at the end of the test."""
    from tests.masters import Master

    started: list[Master] = []

    def make(programs: dict[str, str], url: str | None = redis_url, **kw) -> Master:
        master = Master(short_tmp, url, programs, **kw)
        started.append(master)
        return master

    yield make
    for master in started:
        master.stop()
