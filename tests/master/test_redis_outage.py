"""A master whose Redis goes away: retried, logged once, shown in status, never FATAL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.jobmods.failover import runs
from tests.masters import Master
from tests.sentinels import Node

PROGRAM = """\
queues: [outage]
import: [tests.jobmods.failover]
numprocs: 2
startsecs: 0.2
"""


@pytest.mark.slow
def test_redis_outage_is_shown_in_status_and_never_fatal(short_tmp: Path) -> None:
    node = Node(short_tmp, "redis", ["appendonly yes", 'save ""'])
    node.start()
    url = f"redis://127.0.0.1:{node.port}/0"
    log = str(short_tmp / "runs")
    master = Master(short_tmp, url, {"outage": PROGRAM}, extra_env={"SQ_RUN_LOG": log})
    try:
        master.start()
        pids = master.wait_running("outage", 2)
        assert master.status()["master"]["redis"] == {"ok": True}
        node.kill()
        down = wait_until(lambda: (r := master.status()["master"]["redis"]) and not r["ok"]
                          and r, timeout=15, message="status to show Redis unavailable")
        assert down["since"] and "Connection" in down["error"]
        text = subprocess.run([sys.executable, "-m", "supervisor_q", "status"],
                              env={**os.environ, "SUPERVISOR_Q_SOCKET": str(master.socket)},
                              capture_output=True, text=True, timeout=30).stdout
        assert "redis: unavailable since " in text, text
        # Several retries later the pool is still running with the same children.
        wait_until(lambda: master.status()["master"]["redis"]["failures"] >= 3, timeout=20)
        assert master.program("outage")["state"] != "FATAL"
        assert master.pids("outage") == pids and all(psutil.pid_exists(p) for p in pids)
        node.start()
        wait_until(lambda: master.status()["master"]["redis"]["ok"], timeout=20,
                   message="status to show Redis back")
        queue = RedisQueue(connect(url))
        queue.push("outage", "after", payloads.encode(
            payloads.build("tests.failover.run", "outage", [7], {})))
        wait_until(lambda: runs(log) == [7], timeout=20, message="the job to run after")
        queue.close()
    finally:
        master.stop()
        node.stop()
    logged = master.log.read_text(errors="replace")
    assert logged.count("master: Redis unavailable") == 1, logged
    assert logged.count("master: Redis is back") == 1, logged
    assert "Traceback" not in logged, logged
