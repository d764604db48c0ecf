"""rediss:// for real: a TLS-terminating proxy (tests/tlsproxy.py, certificates from
trustme, client certificate required) in front of a private valkey-server. A master
and a standalone worker drain jobs over TLS; a wrong CA is one clear line."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.connection import SSLConnection

from supervisor_q.jobs import dispatching
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.server import RedisServer
from tests.clusters import free_ports
from tests.helpers import wait_until
from tests.jobmods.basic import record_job
from tests.masters import Master
from tests.tlsproxy import TlsFiles, TlsProxy


@pytest.fixture(scope="module")
def tls() -> Iterator[tuple[TlsFiles, TlsProxy]]:
    with tempfile.TemporaryDirectory(prefix="sq-tls-") as tmp:
        server = RedisServer(data_dir=Path(tmp), port=free_ports(1)[0])
        server.start()
        files = TlsFiles(Path(tmp))
        proxy = TlsProxy(files, server.port).start()
        try:
            yield files, proxy
        finally:
            proxy.stop()
            server.stop()


@pytest.fixture
def url(tls: tuple[TlsFiles, TlsProxy], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    files, proxy = tls
    found = f"rediss://127.0.0.1:{proxy.port}/0?{files.query()}"
    connect(found).flushdb()
    monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", found)
    dispatching._queues.clear()
    yield found
    dispatching._queues.clear()


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", url, *args],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.slow
def test_a_master_and_a_worker_drain_jobs_over_tls(url: str, short_tmp: Path) -> None:
    client = connect(url)
    assert issubclass(client.connection_pool.connection_class, SSLConnection)
    master = Master(short_tmp, url, {"tls": """
        queues: [overtls]
        import: [tests.jobmods.basic]
        numprocs: 2
        startsecs: 0.2
        """})
    for i in range(20):
        record_job.dispatch(i, queue="alone")
    with master:
        for i in range(20):
            record_job.dispatch(i, queue="overtls")
        done = cli(url, "work", "--queue", "alone", "--import", "tests.jobmods.basic",
                   "--stop-when-empty")
        assert done.returncode == 0, done.stderr
        wait_until(lambda: client.llen("results") == 40, timeout=20, message=master.tail())
    assert RedisQueue(client).failed_records() == []


def test_a_wrong_ca_is_one_clear_line(tls: tuple[TlsFiles, TlsProxy], tmp_path: Path) -> None:
    files, proxy = tls
    other = TlsFiles(tmp_path)  # another CA: the proxy's certificate is not signed by it
    url = (f"rediss://127.0.0.1:{proxy.port}/0?ssl_ca_certs={other.ca_file}"
           f"&ssl_certfile={files.client_cert}&ssl_keyfile={files.client_key}")
    done = cli(url, "queue", "size", "q")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "certificate verify failed" in done.stderr, done.stderr
