"""A Redis that hangs (SIGSTOP) rather than dies must not freeze the master: job deadlines,
output capture and control commands go on, `status` shows Redis unavailable, and after
SIGCONT everything recovers with no job lost. A real master, a private real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor_q.ctl.protocol import ControlError, request
from supervisor_q.master.deadlines import KILL_GRACE, TERM_GRACE
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.server import RedisServer
from tests.helpers import wait_until
from tests.masters import Master, results

pytestmark = pytest.mark.slow

TIMEOUT = 6.0  # the stuck job's: its deadline passes while the master probes a hung Redis
WORKER = """\
queues: [hang]
import: [tests.jobmods.basic]
numprocs: 1
startsecs: 0.2
tries: 1
"""
# A line every 0.2 s: a gap in what the master captured shows its loop stalled.
PERIODIC = """\
periodic:
  - {name: tick, job: tests.noop, every: 1h, queue: hang}
"""
CHATTY = "command: sh -c 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done'\n"


@pytest.fixture
def server(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """A server of this test alone, which it may SIGSTOP; always continued at the end."""
    server = RedisServer(data_dir=short_tmp / "redis", persistent=True)
    server.start()
    monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", server.url)
    try:
        yield server
    finally:
        if server.alive():
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def timed(master: Master, command: str, **args: object) -> tuple[float, object]:
    """(seconds the master took to answer, its answer)."""
    began = time.monotonic()
    answer = request(master.socket, command, timeout=5, **args)
    return time.monotonic() - began, answer


def test_a_hanging_redis_does_not_freeze_the_master(short_tmp: Path,
                                                    server: RedisServer) -> None:
    queue = RedisQueue(connect(server.url, socket_timeout=5))
    master = Master(short_tmp, server.url, {"w": WORKER, "chatty": CHATTY})
    try:
        master.start()
        [pid] = master.wait_running("w", 1)
        master.wait_running("chatty", 1)
        built = payloads.build("tests.stuck_in_c", "hang", [], {}, timeout=TIMEOUT)
        queue.push("hang", built.id, payloads.encode(built))
        wait_until(lambda: results(queue.client), message="the stuck job started")
        started = results(queue.client)[0]["at"]
        wait_until(lambda: master.program("w")["processes"][0]["job"], message="its report")
        os.kill(server.process.pid, signal.SIGSTOP)
        offset = timed(master, "tail", program="chatty")[1]["offset"]
        arrivals, slowest, down = [time.monotonic()], 0.0, None
        # The job's deadline passes while the server hangs; watch the master meanwhile.
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie":
            took, status = timed(master, "status")
            slowest = max(slowest, took)
            if not status["master"]["redis"]["ok"]:
                down = down or status["master"]["redis"]
            took, answer = timed(master, "tail", program="chatty", after=offset)
            slowest = max(slowest, took)
            if answer["offset"] != offset:
                offset = answer["offset"]
                arrivals.append(time.monotonic())
            assert time.time() < started + TIMEOUT + 10, "the stuck job was never killed"
            time.sleep(0.05)
        late = time.time() - (started + TIMEOUT + TERM_GRACE + KILL_GRACE)
        assert late < 1.5, f"SIGKILL {late:.2f}s after it was due (the master stalled)"
        assert slowest < 2.0, f"a control command took {slowest:.2f}s"
        gap = max(b - a for a, b in zip(arrivals, arrivals[1:], strict=False))
        assert len(arrivals) > 10 and gap < 2.0, f"output stalled {gap:.2f}s"
        assert down is not None and "Timeout" in down["error"], down
        assert timed(master, "pid")[0] < 2.0
        os.kill(server.process.pid, signal.SIGCONT)
        wait_until(lambda: master.status()["master"]["redis"]["ok"], message="Redis back")
        # Not lost: the master settles the killed job once Redis answers again.
        [record] = wait_until(queue.failed_records, message="the stuck job failed")
        assert record["id"] == built.id and record["reason"].startswith("timeout"), record
        master.wait_running("w", 1)
        after = payloads.build("tests.record", "hang", ["after"], {})
        queue.push("hang", after.id, payloads.encode(after))
        wait_until(lambda: any(r.get("value") == "after" for r in results(queue.client)),
                   message="a job after the hang")
    finally:
        master.stop()
        queue.close()


def test_status_shows_a_hanging_redis_as_unavailable(short_tmp: Path,
                                                     server: RedisServer) -> None:
    """`supervisor-q status` (the CLI) says `redis: unavailable since` for a hung server;
    `periodic list` says so at once rather than timing out."""
    master = Master(short_tmp, server.url, {"w": WORKER, "cron": PERIODIC})
    try:
        master.start()
        master.wait_running("w", 1)
        os.kill(server.process.pid, signal.SIGSTOP)
        wait_until(lambda: not master.status()["master"]["redis"]["ok"], timeout=5,
                   message="status to show Redis unavailable")
        began = time.monotonic()
        text = subprocess.run([sys.executable, "-m", "supervisor_q", "status"],
                              env={**os.environ, "SUPERVISOR_Q_SOCKET": str(master.socket)},
                              capture_output=True, text=True, timeout=30).stdout
        assert "redis: unavailable since " in text, text
        assert time.monotonic() - began < 8, "status answered slowly"  # CLI start included
        began = time.monotonic()
        with pytest.raises(ControlError, match="Redis unavailable since"):
            request(master.socket, "periodic", timeout=5, action="list")
        assert time.monotonic() - began < 1.0, "periodic list answered slowly"
        os.kill(server.process.pid, signal.SIGCONT)
        wait_until(lambda: master.status()["master"]["redis"]["ok"], message="Redis back")
    finally:
        master.stop()


def _embedded(master: Master) -> psutil.Process | None:
    return next((p for p in psutil.Process(master.proc.pid).children()
                 if p.name() in ("valkey-server", "redis-server")), None)


def test_a_killed_embedded_server_is_started_again(short_tmp: Path) -> None:
    """The master's own server SIGKILLed: started again (waiting 1 s at most for it),
    and the master's probe finds it back."""
    master = Master(short_tmp, None, {"idle": "command: sleep 600\nstartsecs: 0.2\n"})
    try:
        master.start()
        first = wait_until(lambda: _embedded(master), message="the embedded server")
        wait_until(lambda: master.status()["master"]["redis"]["ok"], message="Redis up")
        first.kill()
        second = wait_until(lambda: (p := _embedded(master)) and p.pid != first.pid and p,
                            message="the server started again")
        assert second.is_running()
        wait_until(lambda: master.status()["master"]["redis"]["ok"], message="Redis back")
        assert "embedded Redis server exited; starting it again" in master.tail(200)
    finally:
        master.stop()
