"""A hanging primary (SIGSTOP) must not freeze a master on a redis+cluster:// or a
redis+sentinel:// URL: its own clients retry nothing by themselves (each call bounded by
the 1 s socket timeout), so control commands answer and a job's timeout kill stays on
time. Real master, real 6-node cluster or Sentinel set (plain URL: test_redis_hang.py)."""

from __future__ import annotations

import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from supervisor_q.jobs import dispatching
from supervisor_q.master.deadlines import KILL_GRACE, TERM_GRACE
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.faults import is_topology_fault
from supervisor_q.queue.keys import RESTART_KEY
from tests.clusters import LocalCluster, running_cluster
from tests.helpers import wait_until
from tests.master.test_redis_hang import CHATTY, TIMEOUT, WORKER, timed
from tests.masters import Master, results
from tests.sentinels import SentinelSet

pytestmark = pytest.mark.slow

BOUND = 1.6  # seconds: the 1 s bound of one Redis call, plus the answer's own way


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    with running_cluster() as found:
        monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", found.url)
        dispatching._queues.clear()
        try:
            yield found
        finally:
            dispatching._queues.clear()


@pytest.fixture
def sentinels(monkeypatch: pytest.MonkeyPatch) -> Iterator[SentinelSet]:
    with tempfile.TemporaryDirectory(prefix="sq-sentinel-") as tmp:
        deployment = SentinelSet(Path(tmp))
        try:
            deployment.start()
            monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", deployment.url)
            dispatching._queues.clear()
            yield deployment
        finally:
            dispatching._queues.clear()
            deployment.stop()


def stall_and_measure(tmp: Path, url: str, node: psutil.Process) -> tuple[float, float]:
    """A master with a job stuck in C (timeout 6 s); SIGSTOP node once the job runs, and
    time control commands until the master SIGKILLs the job: (slowest answer, seconds
    the kill came after it was due)."""
    queue = RedisQueue(connect(url, socket_timeout=5))
    master = Master(tmp, url, {"w": WORKER, "chatty": CHATTY})
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
        print(f"{url.split(':')[0]}: slowest control command {slowest:.2f}s; "
              f"kill {late:+.2f}s after due")
        return slowest, late
    finally:
        node.send_signal(signal.SIGCONT)
        master.stop()
        queue.close()


def test_a_hanging_cluster_primary_does_not_freeze_the_master(
        short_tmp: Path, cluster: LocalCluster) -> None:
    """SIGSTOP the primary of the key the master reads first on every slow tick (the
    restart signal): control commands still answer within ~1.5 s (2.7 s when RedisCluster
    retried by itself), and a job stuck in C is SIGKILLed on time."""
    node = psutil.Process(cluster.procs[cluster.primary_of(RESTART_KEY)].pid)
    slowest, late = stall_and_measure(short_tmp, cluster.url, node)
    assert late < 1.5, f"SIGKILL {late:.2f}s after it was due (the master stalled)"
    assert slowest < BOUND, f"a control command took {slowest:.2f}s"


def test_a_hanging_sentinel_primary_does_not_freeze_the_master(
        short_tmp: Path, sentinels: SentinelSet) -> None:
    """SIGSTOP the primary behind a redis+sentinel:// URL: as above."""
    assert sentinels.primary.proc is not None
    node = psutil.Process(sentinels.primary.proc.pid)
    slowest, late = stall_and_measure(short_tmp, sentinels.url, node)
    assert late < 1.5, f"SIGKILL {late:.2f}s after it was due (the master stalled)"
    assert slowest < BOUND, f"a control command took {slowest:.2f}s"


def test_a_whole_cluster_away_is_one_outage_shown_in_status(
        short_tmp: Path, cluster: LocalCluster) -> None:
    """Every node SIGSTOPped: control commands still answer within the bound and `status`
    says Redis is unavailable; continued, the master is back. Every node SIGKILLed:
    the same, with no traceback in the master's log (RedisCluster's "cannot be
    connected" is an outage, not a failed loop turn)."""
    master = Master(short_tmp, cluster.url, {"w": WORKER})
    nodes = [psutil.Process(proc.pid) for proc in cluster.procs.values()]
    try:
        master.start()
        master.wait_running("w", 1)
        for node in nodes:
            node.send_signal(signal.SIGSTOP)
        slowest = 0.0

        def shown_down() -> bool:
            nonlocal slowest
            took, answer = timed(master, "status")
            slowest = max(slowest, took)
            return not answer["master"]["redis"]["ok"]

        wait_until(shown_down, timeout=10, message="status to show Redis unavailable")
        for _ in range(10):
            shown_down()
        assert slowest < BOUND, f"a control command took {slowest:.2f}s"
        for node in nodes:
            node.send_signal(signal.SIGCONT)
        wait_until(lambda: master.status()["master"]["redis"]["ok"], timeout=20,
                   message="Redis back")
        worker_client = connect(cluster.url, socket_timeout=1, connect_timeout=1)
        worker_client.get("sq:restart")  # a worker's client (redis-py's own retries)
        for port in list(cluster.procs):
            cluster.kill(port)
        with pytest.raises(redis.ConnectionError) as raised:  # a RedisError callers catch
            worker_client.get("sq:restart")
        assert is_topology_fault(raised.value), repr(raised.value)  # retried, not a failure
        wait_until(lambda: not master.status()["master"]["redis"]["ok"], timeout=10,
                   message="status to show the killed cluster unavailable")
        log_mark = len(master.tail(100_000))
        time.sleep(3)  # three slow ticks of the master against the dead cluster
        later = master.tail(100_000)[log_mark:]
        assert "Traceback" not in later and "iteration failed" not in later, later[-2000:]
    finally:
        for node in nodes:
            if node.is_running():
                node.send_signal(signal.SIGCONT)
        master.stop()
