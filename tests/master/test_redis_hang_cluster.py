"""A hanging cluster primary (SIGSTOP) must not freeze a master on a redis+cluster:// URL:
its own client retries nothing (each call bounded by the 1 s socket timeout), so control
commands answer and a job's timeout kill stays on time. Real master, real 6-node cluster
(the plain-URL version: test_redis_hang.py)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor_q.jobs import dispatching
from supervisor_q.master.deadlines import KILL_GRACE, TERM_GRACE
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.keys import RESTART_KEY
from tests.clusters import LocalCluster, running_cluster
from tests.helpers import wait_until
from tests.master.test_redis_hang import CHATTY, TIMEOUT, WORKER, timed
from tests.masters import Master, results

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    with running_cluster() as found:
        monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", found.url)
        dispatching._queues.clear()
        try:
            yield found
        finally:
            dispatching._queues.clear()


def test_a_hanging_cluster_primary_does_not_freeze_the_master(
        short_tmp: Path, cluster: LocalCluster) -> None:
    """SIGSTOP the primary of the key the master reads first on every slow tick (the
    restart signal): control commands still answer within ~1.5 s, and a job stuck in C
    (on another primary) is SIGKILLed on time."""
    queue = RedisQueue(connect(cluster.url, socket_timeout=5))
    stopped = cluster.primary_of(RESTART_KEY)
    master = Master(short_tmp, cluster.url, {"w": WORKER, "chatty": CHATTY})
    node = psutil.Process(cluster.procs[stopped].pid)
    try:
        master.start()
        [pid] = master.wait_running("w", 1)
        master.wait_running("chatty", 1)
        built = payloads.build("tests.stuck_in_c", "hang", [], {}, timeout=TIMEOUT)
        queue.push("hang", built.id, payloads.encode(built))
        wait_until(lambda: results(queue.client), message="the stuck job started")
        started = results(queue.client)[0]["at"]
        wait_until(lambda: master.program("w")["processes"][0]["job"], message="its report")
        node.send_signal(signal.SIGSTOP)
        slowest = 0.0
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie":
            for command in ("status", "pid"):
                slowest = max(slowest, timed(master, command)[0])
            assert time.time() < started + TIMEOUT + 10, "the stuck job was never killed"
            time.sleep(0.05)
        late = time.time() - (started + TIMEOUT + TERM_GRACE + KILL_GRACE)
        print(f"slowest control command {slowest:.2f}s; kill {late:+.2f}s after due")
        assert late < 1.5, f"SIGKILL {late:.2f}s after it was due (the master stalled)"
        assert slowest < 1.6, f"a control command took {slowest:.2f}s"
    finally:
        node.send_signal(signal.SIGCONT)
        master.stop()
        queue.close()
