"""Event callbacks in a real worker: before/after each attempt, failing, looping; a
callback that raises changes nothing."""

from __future__ import annotations

import redis

from tests.helpers import wait_until
from tests.jobmods.flows import step, step_fail
from tests.workers import results, running


def test_events_fire_around_jobs_and_in_the_loop(redis_url: str) -> None:
    step.dispatch("ok")
    step_fail.dispatch("bad")
    with running(redis_url, 1, "--import", "tests.jobmods.flows,tests.jobmods.hooks"):
        wait_until(lambda: any(e["event"] == "failing" for e in results(redis_url, "event")),
                   timeout=10)
        client = redis.Redis.from_url(redis_url)
        wait_until(lambda: int(client.get("looping") or 0) >= 2, timeout=5)
    seen = [(e["event"], e["job"]) for e in results(redis_url, "event")]
    assert seen == [("before", "flows.step"), ("after", "flows.step"),
                    ("before", "flows.step_fail"), ("after", "flows.step_fail"),
                    ("failing", "flows.step_fail")]
    events = results(redis_url, "event")
    assert events[1]["error"] is None and events[3]["error"] == "RuntimeError"
    assert "step bad broke" in events[4]["reason"]
    assert [r["value"] for r in results(redis_url, "step")] == ["ok"], "hook errors are logged"
