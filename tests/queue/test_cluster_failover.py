"""A primary of a Redis Cluster killed in the middle of a drain: after its replica is
promoted the workers follow, and no job is lost."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.keys import QueueKeys
from tests.clusters import LocalCluster, running_cluster
from tests.helpers import wait_until
from tests.jobmods.clustered import mark

JOBS = 1200


def _names(cluster: LocalCluster) -> tuple[str, str]:
    """A queue, and a result tag that lives on another primary (one that survives)."""
    queue_port = cluster.primary_of(QueueKeys("drain").ready)
    tag = next(f"res{i}" for i in range(100)
               if cluster.primary_of(f"{{res{i}}}:set") != queue_port)
    return "drain", tag


@pytest.mark.slow
def test_killing_the_queue_primary_mid_drain_loses_no_job(monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    with running_cluster(prefix="sq-failover-") as cluster:
        _drain_through_a_failover(cluster, monkeypatch)


def _drain_through_a_failover(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", cluster.url)
    name, tag = _names(cluster)
    client = cluster.client()
    queue = RedisQueue(connect(cluster.url))
    for i in range(JOBS):
        mark.dispatch(tag, str(i), queue=name)
    node = client.get_node_from_key(QueueKeys(name).ready)
    assert client.execute_command("WAIT", 1, 5000, target_nodes=node) >= 1  # replicated
    victim = int(node.port)
    workers = [subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", cluster.url, "work", "--queue",
         name, "--import", "tests.jobmods.clustered", "--sleep", "0.2", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        wait_until(lambda: client.scard(f"{{{tag}}}:set") >= JOBS // 4, timeout=20)
        done_at_kill = client.scard(f"{{{tag}}}:set")
        cluster.kill(victim)
        killed = time.monotonic()
        wait_until(lambda: cluster.primary_of(QueueKeys(name).ready) != victim, timeout=20,
                   message="a replica promoted")
        promoted = time.monotonic() - killed
        wait_until(lambda: client.scard(f"{{{tag}}}:set") == JOBS, timeout=30,
                   message=f"every job ran; {client.scard(f'{{{tag}}}:set')} of {JOBS}")
        drained = time.monotonic() - killed
        wait_until(lambda: queue.counts(name)["reserved"] == 0, timeout=15)
        assert all(w.poll() is None for w in workers), "the workers survived the failover"
    finally:
        for w in workers:
            w.terminate()
        errors = [w.communicate(timeout=15)[1] for w in workers]
    runs = client.llen(f"{{{tag}}}:all")
    lost = JOBS - client.scard(f"{{{tag}}}:set")
    print(f"\ncluster failover: {JOBS} jobs, {done_at_kill} done at the kill, lost {lost}, "
          f"ran twice {runs - JOBS}, promoted after {promoted:.1f}s, drained "
          f"{drained:.1f}s after the kill")
    assert lost == 0
    assert queue.counts(name) == {"ready": 0, "delayed": 0, "reserved": 0, "failed": 0}, errors
