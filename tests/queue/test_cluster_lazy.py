"""A master and a standalone worker started before their Redis Cluster: both come up,
say once that Redis is unavailable (and `status` shows it), and start work as soon as
the cluster is there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor_q.queue.backend import RedisQueue, connect
from tests.clusters import LocalCluster
from tests.helpers import wait_until
from tests.jobmods.basic import record_job
from tests.masters import Master


@pytest.mark.slow
def test_master_and_work_started_before_the_cluster_begin_when_it_comes_up(
        tmp_path: Path, short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = LocalCluster(tmp_path / "nodes")  # ports chosen, nothing listening yet
    (tmp_path / "nodes").mkdir()
    master = Master(short_tmp, cluster.url, {"w": """
        queues: [lazy]
        import: [tests.jobmods.basic]
        numprocs: 1
        startsecs: 0.2
        """})
    worker = subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", cluster.url, "work", "--quiet",
         "--queue", "alone", "--import", "tests.jobmods.basic"],
        env={**os.environ, "SUPERVISOR_Q_REDIS_URL": cluster.url},  # the job's own Redis
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with master:
            wait_until(lambda: not master.status()["master"]["redis"]["ok"], timeout=15,
                       message=master.tail())
            shown = subprocess.run(
                [sys.executable, "-m", "supervisor_q", "status"], capture_output=True,
                text=True, timeout=20,
                env={**_without_sq_env(), "SUPERVISOR_Q_SOCKET": str(master.socket)})
            assert "redis: unavailable since" in shown.stdout, shown
            assert worker.poll() is None, "work waits for Redis instead of exiting"
            cluster.start()
            monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", cluster.url)
            record_job.dispatch("m", queue="lazy")
            record_job.dispatch("w", queue="alone")
            client = connect(cluster.url)
            wait_until(lambda: client.llen("results") == 2, timeout=20,
                       message=master.tail())
            wait_until(lambda: master.status()["master"]["redis"]["ok"], timeout=15)
            log = master.log.read_text()
            assert log.count("Redis unavailable") == log.count("Redis is back") >= 1, log
            assert RedisQueue(client).failed_records() == []
    finally:
        master.stop()  # also when it never answered (then `with` did not stop it)
        worker.terminate()
        _, err = worker.communicate(timeout=15)
        cluster.stop()
    assert err.count("Redis unavailable") == 1, err  # once per episode
    assert "Traceback" not in err


def _without_sq_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_Q_")}
