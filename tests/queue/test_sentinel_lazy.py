"""A master started before its sentinels: it comes up, says once that Redis is
unavailable (status shows it) without stalling its loop, and runs jobs once the
sentinels and the primary are there."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from supervisor_q.jobs.registry import dispatch
from tests.helpers import wait_until
from tests.jobmods.failover import runs
from tests.masters import Master
from tests.sentinels import SentinelSet

JOB = "tests.failover.run"


@pytest.mark.slow
def test_master_started_before_its_sentinels_begins_when_they_come_up(
        tmp_path: Path, short_tmp: Path) -> None:
    deployment = SentinelSet(tmp_path)  # ports chosen, nothing listening yet
    log = str(short_tmp / "runs")
    program = "queues: [late]\nimport: [tests.jobmods.failover]\nnumprocs: 1\n"
    master = Master(short_tmp, deployment.url, {"pool": program},
                    extra_env={"SQ_RUN_LOG": log})
    try:
        with master:
            wait_until(lambda: not master.status()["master"]["redis"]["ok"], timeout=10,
                       message=master.tail())
            asked = time.monotonic()
            master.status()
            assert time.monotonic() - asked < 1.0, "the master's loop is not stalled"
            deployment.start()
            dispatch(JOB, 7, queue="late", connection=deployment.url)
            wait_until(lambda: runs(log) == [7], timeout=20, message=master.tail())
            text = master.log.read_text()
            assert text.count("master: Redis unavailable") == 1, text
    finally:
        master.stop()  # also when it never answered (then `with` did not stop it)
        deployment.stop()
