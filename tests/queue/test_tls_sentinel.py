"""rediss+sentinel:// for real: a primary, a replica and three sentinels, each behind a
proxy (tests/tlsproxy.py SniffingProxy) that terminates TLS for clients and passes the
valkey processes' own plain connections through. Sentinels monitor and announce the
proxies' addresses (`sentinel announce-*`, `replica-announce-*`), so the primary they
name is reached over TLS, with the CA and client certificate given in the URL."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from supervisor_q.jobs import dispatching
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.jobmods.basic import record_job
from tests.sentinels import DOWN_AFTER_MS, SERVICE, Node
from tests.tlsproxy import SniffingProxy, TlsFiles


def sentinels_ready(sentinel: Node) -> bool:
    try:
        with sentinel.client() as client:
            state = client.sentinel_master(SERVICE)
    except Exception:  # noqa: BLE001 - not up yet
        return False
    return state.get("num-slaves", 0) >= 1 and state.get("num-other-sentinels", 0) >= 2


@pytest.mark.slow
def test_a_worker_drains_jobs_over_rediss_sentinel(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory(prefix="sq-tls-sentinel-") as tmp:
        root = Path(tmp)
        files = TlsFiles(root)
        proxy = {name: SniffingProxy(files) for name in ("primary", "replica", "s0", "s1", "s2")}
        data = ["appendonly yes", 'save ""']
        primary = Node(root, "primary", data)
        replica = Node(root, "replica", [
            *data, f"replicaof 127.0.0.1 {proxy['primary'].port}",
            "replica-announce-ip 127.0.0.1", f"replica-announce-port {proxy['replica'].port}"])
        sentinels = [Node(root, f"sentinel{i}", [
            f"sentinel monitor {SERVICE} 127.0.0.1 {proxy['primary'].port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            "sentinel announce-ip 127.0.0.1", f"sentinel announce-port {proxy[f's{i}'].port}",
        ], sentinel=True) for i in range(3)]
        nodes = [primary, replica, *sentinels]
        for node, name in zip(nodes, proxy, strict=True):
            proxy[name].target = node.port
        try:
            for node in nodes:
                node.start()
            wait_until(lambda: all(sentinels_ready(s) for s in sentinels), timeout=15)
            hosts = ",".join(f"127.0.0.1:{proxy[f's{i}'].port}" for i in range(3))
            url = f"rediss+sentinel://{hosts}/{SERVICE}/0?{files.query()}"
            monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", url)
            dispatching._queues.clear()
            for i in range(30):
                record_job.dispatch(i, queue="tls")
            done = subprocess.run(
                [sys.executable, "-m", "supervisor_q", "work", "--queue", "tls",
                 "--import", "tests.jobmods.basic", "--stop-when-empty"],
                capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            client = connect(url)
            assert client.llen("results") == 30
            assert RedisQueue(client).failed_records() == []
            assert proxy["primary"].tls_connections >= 2, "dispatch and work: TLS"
            assert any(proxy[f"s{i}"].tls_connections for i in range(3)), "sentinels: TLS"
            assert proxy["replica"].tls_connections == 0  # only the primary takes clients
        finally:
            dispatching._queues.clear()
            for node in reversed(nodes):
                node.stop()
            for found in proxy.values():
                found.stop()
