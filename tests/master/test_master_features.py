"""Master features around the pools: sd_notify, memory_hard, schedules, autoscale, scale."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.masters import Master, results

WORKER = "queues: [default]\nimport: [tests.jobmods.basic]\nstartsecs: 0.2\n"


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def test_master_speaks_sd_notify(short_tmp: Path, redis_url: str) -> None:
    path = short_tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(15)
    received: list[str] = []

    def until(line: str) -> None:
        while not any(line in m for m in received):
            received.append(sock.recv(4096).decode())

    master = Master(short_tmp, redis_url, {"a": WORKER + "numprocs: 1\n"},
                    extra_env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
    try:
        master.start()
        until("READY=1")
        until("WATCHDOG=1")
        assert any("STATUS=" in m for m in received)
        received.clear()
        master.signal(signal.SIGHUP)
        until("RELOADING=1")
        until("READY=1")
        master.signal(signal.SIGTERM)
        until("STOPPING=1")
        assert master.wait_exit(30) == 0
    finally:
        master.stop()
        sock.close()


def test_a_notify_socket_nobody_reads_never_stalls_the_master(short_tmp: Path,
                                                                redis_url: str) -> None:
    """A hung systemd (its datagram queue full) must not slow a shutdown: each message is
    dropped at once instead of blocking the loop."""
    path = short_tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))  # bound, never read: the queue fills after a few datagrams
    master = Master(short_tmp, redis_url, {"a": WORKER + "numprocs: 1\n"},
                    extra_env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "40000"})
    try:
        master.start()
        master.wait_running("a", 1)
        wait_until(lambda: "cannot notify systemd" in master.tail(), timeout=10,
                   message="the queue filled up")
        master.signal(signal.SIGTERM)
        started = time.monotonic()
        assert master.wait_exit(20) == 0
        assert time.monotonic() - started < 4, "a blocked notify socket slowed the shutdown"
    finally:
        master.stop()
        sock.close()


def test_memory_hard_kills_a_child_mid_job(short_tmp: Path, redis_url: str, queue) -> None:
    program = WORKER + "numprocs: 1\nmemory: 60\nmemory_hard: 100\n"
    with Master(short_tmp, redis_url, {"a": program}) as master:
        [pid] = master.wait_running("a", 1)
        dispatch("tests.allocate_and_wait", 200, 30)
        wait_until(lambda: queue.failed_records(), timeout=20)
        [record] = queue.failed_records()
        assert "memory" in record["reason"]
        # Killed mid-job: started, never ended. (Whether it got to record "allocated" is
        # a race with the master's tick: touching 200 MB takes long under load.)
        phases = [r["phase"] for r in results(queue.client)]
        assert phases[0] == "start" and "end" not in phases, phases
        wait_until(lambda: master.pids("a") and master.pids("a") != [pid], timeout=20)


def test_schedule_sets_the_size_right_after_start(short_tmp: Path, redis_url: str) -> None:
    program = WORKER + "numprocs: 1\nschedule:\n  - {cron: '* * * * *', numprocs: 2}\n"
    with Master(short_tmp, redis_url, {"a": program}) as master:
        master.wait_running("a", 2)
        status = master.program("a")
        assert status["target"] == 2
        assert status["target_reason"] == "schedule * * * * *"
        assert status["next_transition"] is not None


def test_manual_scale_overrides_until_changed(short_tmp: Path, redis_url: str) -> None:
    with Master(short_tmp, redis_url, {"a": WORKER + "numprocs: 1\n"}) as master:
        master.wait_running("a", 1)
        master.call("scale", program="a", numprocs=3)
        master.wait_running("a", 3)
        assert master.program("a")["target_reason"] == "manual scale"
        master.call("scale", program="a", numprocs=1)
        master.wait_running("a", 1)


def test_autoscale_starts_at_min_and_grows_under_backlog(short_tmp: Path, redis_url: str,
                                                         queue) -> None:
    program = ("queues: [default]\nimport: [tests.jobmods.basic]\nstartsecs: 0.2\n"
               "autoscale: {min: 1, max: 3, cooldown: 0, max_shift: 1}\n")
    with Master(short_tmp, redis_url, {"a": program}) as master:
        master.wait_running("a", 1)
        for _ in range(60):
            dispatch("tests.sleep", 0.3)
        master.wait_running("a", 3, timeout=30)
        assert master.program("a")["target_reason"].startswith("autoscale")


def test_monitor_thresholds_are_logged_as_alerts(short_tmp: Path, redis_url: str) -> None:
    program = ("queues: [watched]\nimport: [tests.jobmods.basic]\nnumprocs: 0\n"
               "monitor: {max_size: 2, every: 0.5}\n")
    with Master(short_tmp, redis_url, {"a": program}) as master:
        for _ in range(5):
            dispatch("tests.noop", queue="watched")
        wait_until(lambda: "ALERT queue watched has 5 jobs waiting (over 2)" in master.tail(),
                   timeout=10)
