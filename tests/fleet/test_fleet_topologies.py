"""The fleet on a Sentinel URL and on a Cluster URL: the registry (`status --all`), a
fleet-wide queue pause, and (cluster) a dead master's job handed back across slots."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor_q.jobs import dispatching
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.connection import connect
from tests.clusters import running_cluster
from tests.fleet.test_fleet import LEASE, PROGRAM, cli, fleet
from tests.helpers import wait_until
from tests.masters import Master
from tests.sentinels import SentinelSet

pytestmark = pytest.mark.slow


@pytest.fixture
def sentinel_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sq-sentinel-") as tmp:
        deployment = SentinelSet(Path(tmp))
        try:
            deployment.start()
            monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", deployment.url)
            dispatching._queues.clear()
            yield deployment.url
        finally:
            dispatching._queues.clear()
            deployment.stop()


@pytest.fixture
def cluster_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with running_cluster() as cluster:
        monkeypatch.setenv("SUPERVISOR_Q_REDIS_URL", cluster.url)
        dispatching._queues.clear()
        try:
            yield cluster.url
        finally:
            dispatching._queues.clear()


def starts(url: str, tag: str) -> list[dict]:
    """The job starts recorded in `results` (tests/jobmods/basic.py), through the same
    Sentinel or Cluster client the product uses."""
    client = connect(url)
    try:
        found = [json.loads(r) for r in client.lrange("results", 0, -1)]
    finally:
        client.close()
    return [r for r in found if r.get("kind") == "start" and r["value"] == tag]


def paused(master: Master) -> bool:
    titles = [" ".join(p.cmdline()) for p in master.live_children("naps")]
    return bool(titles) and all(t.strip().endswith(" paused") for t in titles)


def registry_and_pause(url: str, masters: list[Master]) -> None:
    """status --all lists every master with its running child; a queue pause reaches
    each worker and a job dispatched meanwhile runs only after continue."""
    def all_running() -> list[dict] | None:
        found = [m for m in fleet(url) if m["state"] == "alive"]
        return found if len(found) == len(masters) and all(
            [p["state"] for p in m["programs"][0]["processes"]] == ["running"]
            for m in found) else None
    listed = wait_until(all_running, timeout=10, interval=0.2, message="live masters")
    assert {m["pid"] for m in listed} == {m.proc.pid for m in masters}
    done = cli(url, "pause", "--queue", "fleetq")
    assert done.returncode == 0 and "paused on every host" in done.stdout, done.stderr
    wait_until(lambda: all(paused(m) for m in masters), timeout=5, message="paused")
    dispatch("fleet.nap", "after", 0, queue="fleetq")
    assert cli(url, "continue", "--queue", "fleetq").returncode == 0
    wait_until(lambda: starts(url, "after"), timeout=10, message="ran after continue")


def test_fleet_registry_and_queue_pause_on_a_sentinel_url(short_tmp: Path,
                                                          sentinel_url: str) -> None:
    with Master(short_tmp, sentinel_url, {"naps": PROGRAM}) as master:
        master.wait_running("naps", 1)
        registry_and_pause(sentinel_url, [master])


def test_fleet_on_a_cluster_url_registry_pause_and_a_dead_masters_job(
        short_tmp: Path, cluster_url: str) -> None:
    env = {"SUPERVISOR_Q_FLEET_LEASE": str(LEASE)}
    (short_tmp / "a").mkdir()
    (short_tmp / "b").mkdir()
    with Master(short_tmp / "a", cluster_url, {"naps": PROGRAM}, extra_env=env) as one, \
            Master(short_tmp / "b", cluster_url, {"naps": PROGRAM}, extra_env=env) as two:
        one.wait_running("naps", 1)
        two.wait_running("naps", 1)
        registry_and_pause(cluster_url, [one, two])

        dispatch("fleet.nap", "long", 40, queue="fleetq")
        first = wait_until(lambda: starts(cluster_url, "long"), message="started")[0]
        victim, other = (one, two) if first["pid"] in one.pids("naps") else (two, one)
        os.kill(victim.proc.pid, signal.SIGKILL)
        again = wait_until(lambda: starts(cluster_url, "long")[1:], timeout=20,
                           interval=0.1, message="the job ran on the other master")
        assert again[0]["attempts"] == 1 and again[0]["pid"] in other.pids("naps")
        assert any(m["state"] == "gone" for m in fleet(cluster_url))
