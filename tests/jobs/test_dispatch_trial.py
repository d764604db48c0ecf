"""What a user trial of producing found: a hung server (SIGSTOP) held dispatch() and
dispatch_many() for the 30 s socket timeout; a bad delay or chunk gave a confusing
error. Real servers, a real SIGSTOP."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor_q.jobs import dispatching
from supervisor_q.jobs.bulk import BulkDispatchError
from supervisor_q.jobs.registry import Registry, dispatch, dispatch_many, job
from supervisor_q.queue.server import RedisServer

REG = Registry()


@job(name="tests.trial.add", queue="trialq", registry=REG)
def add(a: int, b: int = 0) -> int:
    return a + b


@pytest.fixture
def hung(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A server of this test's own, stopped (SIGSTOP) after one dispatch warmed the
    kept connection; dispatch timeout 1 s."""
    monkeypatch.setenv(dispatching.TIMEOUT_ENV, "1")
    dispatching._queues.clear()
    server = RedisServer(data_dir=tmp_path, persistent=False)
    server.start()
    assert server.process is not None
    add.dispatch(0, connection=server.url)
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield server.url
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
        dispatching._queues.clear()


def timed(fn: object) -> tuple[BaseException, float]:
    start = time.monotonic()
    with pytest.raises(Exception) as caught:
        fn()  # type: ignore[operator]
    return caught.value, time.monotonic() - start


def test_a_hung_server_fails_a_dispatch_within_the_dispatch_timeout(hung: str) -> None:
    error, took = timed(lambda: add.dispatch(1, connection=hung))
    assert "Timeout" in type(error).__name__ and took < 3, (error, took)


def test_a_hung_server_fails_dispatch_many_within_the_bound_and_says_unknown(
        hung: str) -> None:
    error, took = timed(lambda: add.dispatch_many([(1,), (2,)], connection=hung))
    assert isinstance(error, BulkDispatchError) and took < 5, (error, took)
    assert error.landed == [] and len(error.unknown) == 2, "sent, maybe run: unknown"


def test_the_dispatch_timeout_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dispatching.TIMEOUT_ENV, raising=False)
    assert dispatching.dispatch_timeout() == 5.0
    monkeypatch.setenv(dispatching.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="SUPERVISOR_Q_DISPATCH_TIMEOUT must be seconds"):
        dispatching.dispatch_timeout()


@pytest.mark.parametrize("delay", ["x", -1, float("nan"), True, float("inf"), 1e308, 1e9 + 1])
def test_a_bad_delay_is_one_clear_line_before_anything_is_sent(
        redis_url: str, delay: object) -> None:
    for call in (lambda: add.dispatch(1, delay=delay),
                 lambda: add.dispatch_many([(1,)], delay=delay),
                 lambda: dispatch("x.y", 1, delay=delay),
                 lambda: dispatch_many("x.y", [(1,)], delay=delay)):
        with pytest.raises(ValueError) as caught:
            call()
        text = str(caught.value)
        assert text.startswith("delay must be a number of seconds from 0 to 1e+09") \
            and len(text) < 100, text


@pytest.mark.parametrize("chunk", ["a", 0, 1.5])
def test_a_bad_chunk_is_one_clear_line(redis_url: str, chunk: object) -> None:
    with pytest.raises(ValueError, match="chunk must be a whole number >= 1"):
        add.dispatch_many([(1,)], chunk=chunk)  # type: ignore[arg-type]
