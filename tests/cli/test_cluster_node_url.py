"""A plain redis:// URL to a Redis Cluster node: keyed commands get MOVED replies. The
user is told which URL to use, in a one-shot command and in the master's log."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from supervisor_q.fleet.registry import MASTERS_KEY
from tests.cli.test_cli import assert_one_line, clean_env
from tests.clusters import running_cluster
from tests.helpers import wait_until

HINT = "is a Redis Cluster node: use redis+cluster://HOST:PORT (it answered MOVED "


@pytest.mark.slow
def test_a_plain_url_to_a_cluster_node_names_the_cluster_scheme(
        master_factory: Callable) -> None:
    with running_cluster() as cluster:
        fleet_on = cluster.primary_of(MASTERS_KEY)
        port = next(p for p in cluster.ports[:3] if p != fleet_on)  # MOVED for {fleet}
        queue = next(q for q in (f"q{n}" for n in range(100))
                     if cluster.primary_of(f"sq:{{{q}}}:ready") != port)
        url = f"redis://127.0.0.1:{port}/0"
        for argv in (["queue", "size", queue], ["status", "--all"]):
            result = subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", url,
                                     *argv], env=clean_env(), capture_output=True, text=True,
                                    timeout=30)
            err = assert_one_line(result, 1)
            assert err.startswith(f"supervisor-q {argv[0]}: {url} {HINT}"), err
        master = master_factory({"w": f"queues: [{queue}]\nnumprocs: 1\n"}, url=url).start()
        wait_until(lambda: f"the Redis URL {HINT}" in master.log.read_text(), timeout=15,
                   message="the hint in the master's log")
        assert "MovedError" not in master.log.read_text()
