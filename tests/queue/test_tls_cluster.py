"""rediss+cluster:// for real: 3 primaries + 3 replicas (tests/clusters.py), each behind a
proxy (tests/tlsproxy.py SniffingProxy) that terminates TLS for clients (client
certificate required) and passes the nodes' own plain connections (replication,
valkey-cli) through. Nodes announce the proxies' addresses (`cluster-announce-ip/port`;
the bus port stays direct), so CLUSTER SLOTS and MOVED replies name the proxies and a
RedisCluster client reaches every primary over TLS."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from supervisor_q.jobs import dispatching
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.cluster import cluster_client
from supervisor_q.queue.keys import QueueKeys
from tests.clusters import LocalCluster, free_ports
from tests.helpers import wait_until
from tests.jobmods.basic import boom, record_job
from tests.masters import Master
from tests.queue.test_cluster import cli, results, spread
from tests.tlsproxy import SniffingProxy, TlsFiles


@dataclass
class TlsCluster:
    cluster: LocalCluster
    proxies: dict[int, SniffingProxy]  # node port -> the proxy in front of it
    url: str

    def proxy_of(self, key: str) -> SniffingProxy:
        """The proxy in front of the primary that owns key's slot."""
        client = cluster_client(self.url)
        try:
            announced = int(client.get_node_from_key(key).port)
        finally:
            client.close()
        return next(p for p in self.proxies.values() if p.port == announced)


@pytest.fixture(scope="module")
def tls() -> Iterator[TlsCluster]:
    with tempfile.TemporaryDirectory(prefix="sq-tls-cluster-") as tmp:
        root = Path(tmp)
        files = TlsFiles(root)
        ports = free_ports(6)
        proxies = {port: SniffingProxy(files) for port in ports}
        for port, proxy in proxies.items():
            proxy.target = port
        cluster = LocalCluster(root, ports=ports,
                               announce={port: p.port for port, p in proxies.items()})
        hosts = ",".join(f"127.0.0.1:{proxies[p].port}" for p in ports[:2])
        try:
            cluster.start()
            yield TlsCluster(cluster, proxies, f"rediss+cluster://{hosts}?{files.query()}")
        finally:
            cluster.stop()
            for proxy in proxies.values():
                proxy.stop()


@pytest.fixture
def url(tls: TlsCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The TLS URL (also SUPERVISOR_Q_REDIS_URL), on an emptied cluster."""
    client = cluster_client(tls.url)
    client.flushall(target_nodes=client.PRIMARIES)
    client.close()
    monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", tls.url)
    dispatching._queues.clear()
    yield tls.url
    dispatching._queues.clear()


@pytest.mark.slow
def test_nodes_announce_the_proxies(tls: TlsCluster) -> None:
    direct = redis.Redis(port=tls.cluster.ports[0], socket_timeout=2)
    named = {int(shard[2][1]) for shard in direct.execute_command("CLUSTER SLOTS")}
    proxied = {p.port for p in tls.proxies.values()}
    assert len(named) == 3 and named <= proxied, named
    shards = direct.execute_command("CLUSTER SHARDS")
    assert {int(node[b"port"]) for shard in shards for node in shard[b"nodes"]} == proxied, \
        "every node, replicas too, is named by its proxy"
    owner = tls.proxy_of("k")
    wrong = next(port for port, p in tls.proxies.items() if p is not owner)
    with pytest.raises(redis.exceptions.MovedError) as moved:
        redis.Redis(port=wrong, socket_timeout=2).get("k")
    assert moved.value.port == owner.port, "MOVED names the owner's proxy"


@pytest.mark.slow
def test_work_drains_jobs_on_two_nodes_over_rediss_cluster(tls: TlsCluster, url: str) -> None:
    client = cluster_client(url)
    q = spread(client, 2, prefix="tls")
    proxies = [tls.proxy_of(QueueKeys(name).ready) for name in q]
    assert proxies[0] is not proxies[1], "the two queues live on two primaries"
    for i in range(20):
        record_job.dispatch(i, queue=q[i % 2])
    failed_id = boom.dispatch("x", queue=q[1])
    before = [p.tls_connections for p in proxies]
    done = subprocess.run(
        [sys.executable, "-m", "supervisor_q", "work", "--queue", ",".join(q), "--quiet",
         "--import", "tests.jobmods.basic", "--tries", "1", "--stop-when-empty"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert all(p.tls_connections > b for p, b in zip(proxies, before, strict=True)), \
        "the worker reached both primaries over TLS"
    runs = [r for r in results(client) if r["id"] != failed_id]
    assert sorted(r["value"] for r in runs) == list(range(20))
    assert {r["queue"] for r in runs} == set(q)
    assert [RedisQueue(client).counts(name)["ready"] for name in q] == [0, 0]
    size = cli(url, "queue", "size", q[0])
    assert size.returncode == 0 and size.stdout.strip() == "0", size.stderr
    listed = cli(url, "failed", "list")
    assert listed.returncode == 0 and listed.stdout.count(failed_id) == 1, listed.stderr


@pytest.mark.slow
def test_a_master_runs_jobs_over_rediss_cluster(tls: TlsCluster, url: str,
                                                tmp_path: Path) -> None:
    client = cluster_client(url)
    q = spread(client, 2, prefix="tlsm")
    proxies = [tls.proxy_of(QueueKeys(name).ready) for name in q]
    before = [p.tls_connections for p in proxies]
    with Master(tmp_path, url, {"tls": f"""
        queues: [{q[0]}, {q[1]}]
        import: [tests.jobmods.basic]
        numprocs: 1
        startsecs: 0.2
        """}) as master:
        master.wait_running("tls", 1)
        for i in range(6):
            record_job.dispatch(i, queue=q[i % 2])
        wait_until(lambda: len(results(client)) == 6, timeout=15, message=master.tail())
    assert {r["queue"] for r in results(client)} == set(q)
    assert all(p.tls_connections > b for p, b in zip(proxies, before, strict=True))
