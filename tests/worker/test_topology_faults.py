"""A topology fault raised inside a job (e.g. READONLY from middleware's Redis calls) is
not the job's failure: it goes back, its attempt and exception not counted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.jobmods.failover import runs


def test_readonly_in_a_job_is_retried_without_spending_its_only_try(
        redis_url: str, tmp_path: Path) -> None:
    queue = RedisQueue(connect(redis_url))
    queue.push("default", "ro", payloads.encode(
        payloads.build("tests.failover.readonly_once", "default", [5], {}, tries=1)))
    log = str(tmp_path / "runs")
    worker = subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work", "--quiet",
         "--import", "tests.jobmods.failover", "--tries", "1", "--sleep", "0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SQ_RUN_LOG": log})
    try:
        wait_until(lambda: runs(log) == [5], timeout=20, message="the second run")
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=10)
    assert queue.client.lrange("attempts:5", 0, -1) == [b"1", b"1"], "attempt undone"
    assert queue.failed_records() == []
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 0, "failed": 0}
    assert err.count("Redis unavailable during job ro") == 1, err
    queue.close()
