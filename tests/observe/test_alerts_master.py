"""Alerts in a real master: webhooks to a local HTTP server (hooks.py), one notification
per condition while it lasts and one when it clears, FATAL, a failure rate, a webhook
that fails or hangs, and a bad `alerts:` config."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.masters import Master
from tests.observe.hooks import HookServer

pytestmark = pytest.mark.slow
EVERY = 0.2  # seconds between two checks in these tests


def settings(*urls: str, extra: str = "") -> str:
    hooks = ", ".join(f"'{u}'" for u in urls)
    return f"alerts: {{webhooks: [{hooks}], every: {EVERY}{extra}}}\n"


def test_queue_over_size_fires_once_while_over_then_clears_once(short_tmp: Path,
                                                                  redis_url: str) -> None:
    worker = "queues: [sized]\nimport: [tests.jobmods.basic]\nnumprocs: 0\n"
    with HookServer() as hook:
        master = Master(short_tmp, redis_url, {"w": worker})
        master.write("supervisor-q", settings(hook.url, extra=", max_size: 2"))
        with master:
            for _ in range(5):
                dispatch("tests.noop", queue="sized")
            wait_until(lambda: hook.of("queue_size"), timeout=10, message="fired")
            time.sleep(6 * EVERY)  # several more checks while still over: no repeat
            assert len(hook.of("queue_size")) == 1
            body = hook.of("queue_size")[0]
            assert body["text"].endswith("ALERT queue sized has 5 jobs waiting (over 2)")
            assert body["alert"]["state"] == "firing"
            assert body["alert"]["value"] == 5 and body["alert"]["threshold"] == 2
            master.call("scale", program="w", numprocs=1)  # drains the queue
            wait_until(lambda: hook.of("queue_size", "cleared"), timeout=15,
                       message="cleared")
            time.sleep(6 * EVERY)
            assert [b["alert"]["state"] for b in hook.of("queue_size")] == ["firing",
                                                                            "cleared"]
            assert master.tail().count("ALERT queue sized has 5 jobs waiting") == 1


def test_a_flapping_queue_notifies_once_per_period(short_tmp: Path, redis_url: str) -> None:
    """The trial: period 60, the queue over and under its max_size 4 times in a few
    seconds; one firing and one clear reach the webhook and the log, not eight."""
    worker = "queues: [flap]\nimport: [tests.jobmods.basic]\nnumprocs: 0\n"
    queue = RedisQueue(connect(redis_url))
    with HookServer() as hook:
        master = Master(short_tmp, redis_url, {"w": worker})
        master.write("supervisor-q", settings(hook.url, extra=", max_size: 2, period: 60"))
        with master:
            for _ in range(4):
                for _ in range(3):
                    dispatch("tests.noop", queue="flap")
                wait_until(lambda: master.status()["master"]["alerts"], timeout=10,
                           message="the master saw the queue over")
                queue.clear("flap")
                wait_until(lambda: not master.status()["master"]["alerts"], timeout=10,
                           message="the master saw the queue under")
            wait_until(lambda: len(hook.of("queue_size")) >= 2, timeout=10, message="posts")
            log = master.tail(400)
        assert [b["alert"]["state"] for b in hook.of("queue_size")] == ["firing", "cleared"]
    assert log.count("ALERT queue flap has 3 jobs waiting") == 1, log
    assert log.count("ALERT CLEARED queue flap") == 1, log


def test_a_fatal_program_and_a_crash_loop_fire(short_tmp: Path, redis_url: str) -> None:
    broken = ("queues: [f]\nimport: [tests.jobmods.does_not_exist]\nstartretries: 2\n"
              "alerts: {crash_loop: {restarts: 2, within: 60}}\n")
    with HookServer() as hook:
        master = Master(short_tmp, redis_url, {"broken": broken})
        master.write("supervisor-q", settings(hook.url))
        with master:
            wait_until(lambda: hook.of("fatal"), timeout=20, message="FATAL notified")
            body = hook.of("fatal")[0]
            assert body["alert"]["subject"] == "broken" and "is FATAL" in body["text"]
            loop = wait_until(lambda: hook.of("crash_loop"), timeout=5, message="crash loop")
            assert len(loop) == 1 and loop[0]["alert"]["value"] >= 2
            assert "crash restarts in the last 60s (limit 2)" in loop[0]["text"]


def test_a_failure_rate_fires(short_tmp: Path, redis_url: str) -> None:
    worker = ("queues: [failing]\nimport: [tests.jobmods.basic]\n"
              "alerts: {failures_per_minute: 2}\n")
    with HookServer() as hook:
        master = Master(short_tmp, redis_url, {"w": worker})
        master.write("supervisor-q", settings(hook.url))
        with master:
            for _ in range(2):
                dispatch("tests.boom", queue="failing")
            time.sleep(5 * EVERY)  # two failures are not over 2
            assert not hook.of("failures")
            dispatch("tests.boom", queue="failing")
            wait_until(lambda: hook.of("failures"), timeout=10, message="rate notified")
            body = hook.of("failures")[0]
            assert body["alert"]["value"] == 3 and body["alert"]["threshold"] == 2
            assert "3 failed jobs in the last minute" in body["text"]


def test_failing_or_hanging_webhooks_do_not_delay_the_master(short_tmp: Path,
                                                             redis_url: str) -> None:
    worker = "queues: [slowhook]\nimport: [tests.jobmods.basic]\nnumprocs: 0\n"
    with HookServer("hang") as hung, HookServer("error") as failing:
        master = Master(short_tmp, redis_url, {"w": worker})
        # A period of 0.3 s: a reminder every 0.3 s while the queue stays over.
        master.write("supervisor-q", settings(hung.url, failing.url,
                                              extra=", max_size: 1, period: 0.3"))
        with master:
            dispatch("tests.noop", queue="slowhook")
            dispatch("tests.noop", queue="slowhook")
            wait_until(lambda: hung.bodies and len(failing.bodies) >= 1, timeout=10)
            slowest = 0.0
            for _ in range(10):
                started = time.monotonic()
                master.status()
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.1)
            assert slowest < 1.0, f"status took {slowest:.2f}s"  # a hung POST: 3 s
            assert master.tail(400).count(f"webhook http://127.0.0.1:"
                                          f"{failing.server.server_address[1]} failed") == 1
            assert "HTTP Error 500" in master.tail(400)


def test_bad_alert_config_is_one_line_and_the_master_keeps_running(short_tmp: Path,
                                                                  redis_url: str) -> None:
    idle = "queues: [idle]\nimport: [tests.jobmods.basic]\nnumprocs: 0\n"
    master = Master(short_tmp, redis_url, {"idle": idle})
    with master:
        master.write("supervisor-q", "alerts: {max_size: -3, webhooks: [ftp://x]}\n")
        wait_until(lambda: "settings refused" in master.tail(), timeout=10)
        line = next(ln for ln in master.tail().splitlines() if "settings refused" in ln)
        assert "supervisor-q.yaml: alerts.max_size:" in line
        assert "supervisor-q.yaml: alerts.webhooks: must be http:// or https:// URLs" in \
            master.tail()
        assert master.answers()
        master.write("idle", idle + "alerts: {crash_loop: {restarts: 0}}\n")
        wait_until(lambda: "config reload refused" in master.tail(), timeout=10)
        assert "idle.yaml: alerts.crash_loop.restarts:" in master.tail()
        assert master.answers()
