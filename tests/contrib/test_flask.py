"""Flask apps (issue 14): a view of Flask's test app dispatches a job; a standalone
worker (`work --setup`) pushes the app context first, so the job can use current_app."""

from __future__ import annotations

import pytest

from tests.helpers import wait_until
from tests.workers import results, running

pytest.importorskip("flask")


def test_a_job_uses_current_app_after_the_setup_hook(redis_url: str) -> None:
    from tests.contrib.flaskapp import app

    with running(redis_url, 1, "--import", "tests.contrib.flaskapp",
                 "--setup", "tests.contrib.flaskapp:setup", queues="flask"):
        response = app.test_client().post("/signup", data={"name": "Ada"})
        assert response.status_code == 200
        wait_until(lambda: results(redis_url, "greeting"), timeout=15,
                   message="the job ran in the worker")
    [greeting] = results(redis_url, "greeting")
    assert greeting["value"] == "Welcome, Ada"
    assert greeting["id"] == response.get_json()["job"]


def test_without_the_setup_hook_the_job_fails_outside_an_app_context(
        redis_url: str) -> None:
    from supervisor_q.queue.backend import RedisQueue, connect
    from tests.contrib.flaskapp import greet

    with running(redis_url, 1, "--import", "tests.contrib.flaskapp", queues="flask"):
        greet.dispatch("Ada")
        queue = RedisQueue(connect(redis_url))
        failed = wait_until(lambda: queue.failed_records(), timeout=15)
    assert "Working outside of application context" in str(failed)
    assert results(redis_url, "greeting") == []
