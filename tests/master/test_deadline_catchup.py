"""A finish still unread in a child's report pipe is not a timeout: the master reads the
pipe of a child whose job looks overdue before it signals it. A master stopped longer
than a job's timeout (SIGSTOP, a swapped-out host) finds, once it runs again, many
starts and finishes queued in the pipe: the jobs that ended in time are not killed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import redis

from tests.helpers import wait_until
from tests.jobmods.basic import sleep_job
from tests.masters import Master

WORKER = """\
queues: [stall]
import: [tests.jobmods.basic]
numprocs: 1
startsecs: 0.2
timeout: 1
"""


def test_a_stalled_master_does_not_kill_jobs_that_ended_in_time(short_tmp: Path,
                                                               redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"w": WORKER}) as master:
        [pid] = master.wait_running("w", 1)
        sleep_job.dispatch_many([(0.004,)] * 2500, queue="stall", connection=redis_url)
        for _ in range(3):  # three stalls: each one lands in a resting pipe most times
            seen = client.llen("results")
            wait_until(lambda seen=seen: client.llen("results") >= seen + 100, timeout=20)
            os.kill(master.proc.pid, signal.SIGSTOP)  # jobs go on; their reports wait
            try:
                time.sleep(1.8)  # past the 1 s timeout and its grace
            finally:
                os.kill(master.proc.pid, signal.SIGCONT)
        wait_until(lambda: client.llen("results") >= 5000, timeout=60)  # start + end each
        log = master.tail(400)
        assert "passed its timeout" not in log, log
        assert master.pids("w") == [pid] and psutil.pid_exists(pid)
    client.close()
