"""Unique jobs, without-overlapping, throttle, funnel and throttles-exceptions with real
workers against the real server."""

from __future__ import annotations

import redis

from tests.helpers import wait_until
from tests.jobmods.flows import (
    flaky,
    funnel_job,
    overlap_drop,
    overlap_job,
    throttled,
    unique_job,
    unique_processing,
    unique_short,
)
from tests.workers import results, running, wait_idle


def _intervals(runs: list[dict], key: str | None = None) -> list[tuple[float, float]]:
    starts = {r["value"]: r["at"] for r in runs if r["phase"] == "start"
              and (key is None or r.get("key") == key)}
    ends = {r["value"]: r["at"] for r in runs if r["phase"] == "end"
            and (key is None or r.get("key") == key)}
    return sorted((starts[v], ends[v]) for v in starts)


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = current = 0
    for _, step in edges:  # at equal times an end (-1) sorts first: touching is fine
        current += step
        most = max(most, current)
    return most


def test_unique_drops_duplicates_and_frees_the_lock_after_the_job(redis_url: str) -> None:
    first = unique_job.dispatch("a")
    assert first is not None
    assert unique_job.dispatch("a") is None, "duplicate dispatch says it was dropped"
    assert unique_job.dispatch("b") is not None, "another unique id is not a duplicate"
    with running(redis_url, 1):
        wait_until(lambda: len(results(redis_url, "unique")) == 2, timeout=10)
        wait_until(lambda: unique_job.dispatch("a") is not None, timeout=5,
                   message="lock freed after the job finished")
        wait_until(lambda: len(results(redis_url, "unique")) == 3, timeout=10)
    assert sorted(r["value"] for r in results(redis_url, "unique")) == ["a", "a", "b"]


def test_unique_lock_expires_after_unique_for(redis_url: str) -> None:
    assert unique_short.dispatch("k") is not None  # unique_for=1.0, no worker runs it
    assert unique_short.dispatch("k") is None
    wait_until(lambda: unique_short.dispatch("k") is not None, timeout=5,
               message="lock gone after unique_for")


def test_unique_until_processing_frees_the_lock_when_the_job_starts(redis_url: str) -> None:
    assert unique_processing.dispatch("p", 1.5) is not None
    assert unique_processing.dispatch("p", 1.5) is None
    with running(redis_url, 1):
        wait_until(lambda: results(redis_url, "unique"), timeout=10)
        assert unique_processing.dispatch("p", 0.0) is not None, "free while it runs"


def test_without_overlapping_never_runs_one_key_twice_at_once(redis_url: str) -> None:
    for i in range(5):
        overlap_job.dispatch("k", i, 0.15)
    overlap_job.dispatch("other", 99, 0.3)
    with running(redis_url, 2):
        wait_until(lambda: len([r for r in results(redis_url, "overlap")
                                if r["phase"] == "end"]) == 6, timeout=20)
    spans = _intervals(results(redis_url, "overlap"), key="k")
    assert len(spans) == 5
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"two jobs of key k overlapped: {spans}"
    attempts = [r["attempts"] for r in results(redis_url, "overlap")]
    assert max(attempts) == 1, "waiting for the lock does not spend attempts"


def test_without_overlapping_dont_release_drops_the_overlapping_job(redis_url: str) -> None:
    with running(redis_url, 2):
        wait_idle(redis_url, 2)
        overlap_drop.dispatch(1, 1.0)
        overlap_drop.dispatch(2, 1.0)
        client = redis.Redis.from_url(redis_url)
        wait_until(lambda: client.hlen("sq:{default}:payloads") == 0, timeout=10)
    assert len(results(redis_url, "overlap_drop")) == 1
    assert client.zcard("sq:{default}:failed") == 0


def test_throttle_holds_the_rate_within_its_bound(redis_url: str) -> None:
    for i in range(9):  # allow=3 every 1.0 s
        throttled.dispatch(i)
    with running(redis_url, 2):
        wait_until(lambda: len(results(redis_url, "throttled")) == 9, timeout=20)
    starts = sorted(r["at"] for r in results(redis_url, "throttled"))
    for a, b in zip(starts, starts[3:], strict=False):
        assert b - a >= 0.95, f"more than 3 starts within 1 s: {starts}"
    assert starts[-1] - starts[0] < 4.0, "jobs were held back much longer than the rate"


def test_funnel_limits_concurrency(redis_url: str) -> None:
    for i in range(6):
        funnel_job.dispatch(i, 0.25)
    with running(redis_url, 3):
        wait_until(lambda: len([r for r in results(redis_url, "funnel")
                                if r["phase"] == "end"]) == 6, timeout=20)
    assert _most_at_once(_intervals(results(redis_url, "funnel"))) == 2


def test_throttles_exceptions_pauses_after_consecutive_failures(redis_url: str) -> None:
    flaky.dispatch()  # tries=10; the circuit opens for 1.5 s after 2 failures
    with running(redis_url, 1):
        wait_until(lambda: len(results(redis_url, "flaky")) >= 3, timeout=15)
    runs = results(redis_url, "flaky")
    assert runs[1]["at"] - runs[0]["at"] < 1.2, "no pause before the limit"
    assert runs[2]["at"] - runs[1]["at"] >= 1.4, "paused while the circuit was open"
    assert [r["attempts"] for r in runs[:3]] == [1, 2, 3], "held-back runs spend no attempt"
