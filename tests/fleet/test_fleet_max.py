"""autoscale.fleet_max: two real masters autoscaling one deep queue never run more than
fleet_max processes together; a SIGKILLed master's share is given back at its lease's end."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from supervisor_q.fleet import shares
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.masters import Master

pytestmark = pytest.mark.slow

LEASE = 6.0
PROGRAM = """\
queues: [fmq]
import: [tests.jobmods.fleetjobs]
autoscale: {min: 1, max: 4, fleet_max: 4, cooldown: 0.3, max_shift: 2}
tries: 1
timeout: 60
startsecs: 0.2
"""


def processes(master: Master) -> int:
    found = 0
    for proc in master.live_children("p"):
        try:
            found += proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            pass
    return found


def test_two_masters_share_fleet_max_and_a_dead_ones_share_is_given_back(
        short_tmp: Path, redis_url: str) -> None:
    env = {"SUPERVISOR_Q_FLEET_LEASE": str(LEASE)}
    (short_tmp / "a").mkdir()
    (short_tmp / "b").mkdir()
    samples: list[tuple[int, int]] = []
    done = threading.Event()
    with Master(short_tmp / "a", redis_url, {"p": PROGRAM}, extra_env=env) as one, \
            Master(short_tmp / "b", redis_url, {"p": PROGRAM}, extra_env=env) as two:
        def sample() -> None:
            while not done.is_set():
                samples.append((processes(one), processes(two)))
                time.sleep(0.05)
        one.wait_running("p", 1)
        two.wait_running("p", 1)  # both at their floor (min 1) before the queue fills
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for n in range(300):
            dispatch("fleet.steps", f"j{n}", 5, queue="fmq")  # 0.5 s each: a deep queue
        try:
            wait_until(lambda: samples and sum(samples[-1]) == 4 and min(samples[-1]) >= 1,
                       timeout=10, interval=0.1, message="the fleet grew to fleet_max")
            reasons = wait_until(lambda: [r for m in (one, two) if (r := m.program("p")[
                "target_reason"]).startswith("autoscale fleet_max 4: ")], timeout=5,
                message="status names the cap")  # autoscale wants 4 on each master
            assert reasons[0][-len(" here") - 1] in "123"  # its part of the 4
            time.sleep(1.5)  # keep sampling at the cap
        finally:
            done.set()
            sampler.join()
        assert max(a + b for a, b in samples) == 4, samples
        queue = RedisQueue(connect(redis_url))
        assert sum(shares.shares(queue.client, ["fmq"]).values()) <= 4

        killed_at = time.monotonic()
        os.kill(one.proc.pid, signal.SIGKILL)
        wait_until(lambda: processes(two) == 4, timeout=LEASE + 8, interval=0.1,
                   message="the survivor grew into the dead master's share")
        regrown = time.monotonic() - killed_at
        print(f"fleet_max: sum of processes sampled {len(samples)}x, max "
              f"{max(a + b for a, b in samples)}; survivor at 4 {regrown:.1f}s after the kill")
        assert regrown >= LEASE - 2.5  # not before the dead master's lease could lapse
