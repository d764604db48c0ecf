"""A job's on_failure handler in real workers: once when the job fails for good (not on
the attempts that are retried), also when the master failed it (issue 14)."""

from __future__ import annotations

import pytest
import redis

from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.keys import QueueKeys
from tests.helpers import wait_until
from tests.workers import results, running

FAILING = "tests.jobmods.failing"


def drained(redis_url: str) -> bool:
    """Nothing ready, delayed or reserved on `default`: every job and callback settled."""
    client, keys = redis.Redis.from_url(redis_url), QueueKeys("default")
    try:
        return not (client.llen(keys.ready) or client.zcard(keys.reserved)
                    or client.zcard(keys.delayed))
    finally:
        client.close()


def test_on_failure_runs_once_after_the_last_try(redis_url: str) -> None:
    with running(redis_url, 1, "--import", FAILING):
        job_id = dispatch("tests.always_fails", 7, note="hi", queue="default")
        wait_until(lambda: results(redis_url, "on_failure"), timeout=15,
                   message="on_failure ran")
        wait_until(lambda: drained(redis_url), timeout=10, message="queue drained")
        attempts = results(redis_url, "attempt")
        failures = results(redis_url, "on_failure")
    assert [a["attempts"] for a in attempts] == [1, 2, 3]
    assert len(failures) == 1, failures
    assert failures[0]["args"] == [7] and failures[0]["kwargs"] == {"note": "hi"}
    assert "ValueError: no user 7" in failures[0]["reason"]
    assert failures[0]["id"] == job_id  # it runs inside the failed job's context


@pytest.mark.slow
def test_on_failure_runs_once_when_the_master_fails_the_job(master_factory,
                                                            redis_url: str) -> None:
    program = "queues: [default]\nimport: [tests.jobmods.failing]\nnumprocs: 1\n" \
              "startsecs: 0.2\n"
    with master_factory({"apps": program}) as master:
        master.wait_running("apps", 1)
        dispatch("tests.stuck_then_fails", 9, queue="default")
        wait_until(lambda: results(redis_url, "on_failure"), timeout=20,
                   message=f"on_failure ran; log: {master.tail()}")
        wait_until(lambda: drained(redis_url), timeout=10, message="callbacks settled")
        attempts = results(redis_url, "attempt")
        failures = results(redis_url, "on_failure")
    assert [a["attempts"] for a in attempts] == [1, 2], "both tries were killed"
    assert len(failures) == 1, failures
    assert failures[0]["args"] == [9]
    assert "timeout" in failures[0]["reason"]


def test_sync_mode_runs_the_handler_inline(redis_url: str) -> None:
    import supervisor_q
    from tests.jobmods.failing import always_fails

    supervisor_q.set_sync(True)
    try:
        with pytest.raises(ValueError, match="no user 5"):
            always_fails.dispatch(5)
    finally:
        supervisor_q.set_sync(None)
    [failure] = results(redis_url, "on_failure")
    assert failure["args"] == [5] and "no user 5" in failure["reason"]
