"""The deploy restart signal against a real server: server time, monotonic, garbage-proof."""

from __future__ import annotations

import math
import threading

import pytest
import redis

from supervisor_q.queue.keys import RESTART_KEY
from supervisor_q.queue.restart import (
    MAX_GENERATION,
    parse_generation,
    read_generation,
    should_restart,
    signal_restart,
)


def test_signal_stores_server_time_and_newer_restarts(redis_db) -> None:
    client = redis_db.client()
    assert read_generation(client) is None
    started_with = read_generation(client)  # a child that booted before any deploy
    seconds, micros = client.time()
    first = signal_restart(client)
    assert abs(first - (seconds + micros / 1e6)) < 5  # the server's clock, not ours
    assert read_generation(client) == first
    assert client.get(RESTART_KEY) == f"{first:.6f}".encode()
    assert should_restart(started_with, read_generation(client))

    child_generation = read_generation(client)  # a child started after the first deploy
    assert not should_restart(child_generation, read_generation(client))  # equal: stay
    second = signal_restart(client)
    assert second > first
    assert should_restart(child_generation, read_generation(client))


def test_deleted_key_restarts_nobody(redis_db) -> None:
    client = redis_db.client()
    generation = signal_restart(client)
    client.delete(RESTART_KEY)  # e.g. FLUSHDB or a cache clear
    assert read_generation(client) is None
    assert not should_restart(generation, read_generation(client))
    assert not should_restart(None, read_generation(client))


@pytest.mark.parametrize("garbage", [
    b"", b"soon", b"nan", b"NaN", b"inf", b"-inf", b"-1", b"-0.5", b"1e999", b"\xff\xfe",
    b"12 34", b"0x10",
])
def test_garbage_restarts_nobody_and_never_raises(redis_db, garbage: bytes) -> None:
    client = redis_db.client()
    client.set(RESTART_KEY, garbage)
    assert read_generation(client) is None
    assert not should_restart(1000.0, read_generation(client))
    assert not should_restart(None, read_generation(client))
    # The next deploy writes a sane value over the garbage.
    value = signal_restart(client)
    assert math.isfinite(value) and read_generation(client) == value


def test_wrong_type_key_reads_as_none(redis_db) -> None:
    client = redis_db.client()
    client.rpush(RESTART_KEY, "x")
    assert read_generation(client) is None


def test_many_signals_strictly_increase(redis_db) -> None:
    client = redis_db.client()
    values = [signal_restart(client) for _ in range(300)]  # many within one microsecond
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    assert read_generation(client) == values[-1]


def test_concurrent_signals_are_distinct_and_increasing(redis_db) -> None:
    results: list[list[float]] = [[] for _ in range(4)]

    def deploy(out: list[float]) -> None:
        client = redis_db.client()  # one connection per thread, like separate hosts
        out.extend(signal_restart(client) for _ in range(50))

    threads = [threading.Thread(target=deploy, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [v for out in results for v in out]
    assert len(set(everything)) == len(everything)  # no two deploys got the same value
    for out in results:
        assert out == sorted(out) and len(set(out)) == len(out)
    assert read_generation(redis_db.client()) == max(everything)


def test_a_future_value_is_still_exceeded(redis_db) -> None:
    client = redis_db.client()
    client.set(RESTART_KEY, "4102444800.999999")  # set by hand: 2100-01-01
    assert signal_restart(client) == 4102444801.0
    assert client.get(RESTART_KEY) == b"4102444801.000000"
    assert should_restart(4102444800.999999, read_generation(client))


def test_a_value_beyond_float_precision_is_garbage(redis_db) -> None:
    client = redis_db.client()
    client.set(RESTART_KEY, "99999999999.999999")  # microseconds no longer fit a float
    assert read_generation(client) is None
    assert signal_restart(client) < MAX_GENERATION  # overwritten with the server time


def test_decoded_client_works_too(redis_db) -> None:
    client = redis.Redis.from_url(redis_db.url, decode_responses=True)
    value = signal_restart(client)
    assert read_generation(client) == value


@pytest.mark.parametrize(("started_with", "current", "expected"), [
    (None, None, False),  # no signal ever
    (None, 100.0, True),  # first deploy after the child booted
    (100.0, None, False),  # key deleted: never restart
    (100.0, 100.0, False),  # equal: the child already runs this generation
    (100.0, 99.0, False),  # older (restored backup): no restart
    (100.0, 100.000001, True),
    (100.0, math.nan, False),
    (100.0, math.inf, False),
    (100.0, -1.0, False),
    (math.nan, 100.0, True),  # a child with no valid generation restarts on a valid signal
])
def test_should_restart_table(started_with: float | None, current: float | None,
                              expected: bool) -> None:
    assert should_restart(started_with, current) is expected


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None), (b"12.5", 12.5), ("12.5", 12.5), (7, 7.0), (True, None), (b"0", 0.0),
    (b" 3 ", 3.0), (b"abc", None), (b"nan", None), (-3, None), ([1], None),
    (b"9007199254.5", 9007199254.5), (b"9007199255", None),
])
def test_parse_generation(raw: object, expected: float | None) -> None:
    assert parse_generation(raw) == expected  # type: ignore[arg-type]


def test_wrong_type_reads_as_no_signal_but_other_errors_propagate(redis_db) -> None:
    """WRONGTYPE is garbage (no signal); any other error (here NOPERM; in a cluster MOVED,
    on a failover READONLY or LOADING) must reach the caller as "unknown", never read
    as "no signal", or a restart would be silently skipped."""
    client = redis_db.client()
    client.rpush(RESTART_KEY, "a list")
    assert read_generation(client) is None
    client.delete(RESTART_KEY)
    user = f"no-get-{redis_db.db}"
    client.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["*"],
                       commands=["+@all", "-get"])
    try:
        limited = redis.Redis(unix_socket_path=str(redis_db.server.unix_socket),
                              db=redis_db.db, username=user, password="pw")
        with pytest.raises(redis.exceptions.NoPermissionError):
            read_generation(limited)
        limited.close()
    finally:
        client.acl_deluser(user)
