"""balance: simple and auto with a real master: which queue each child was forked with
(status), that it serves only that one, and auto's shift toward waiting work and back."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.jobs.registry import dispatch
from tests.helpers import wait_until
from tests.masters import Master

BASE = "queues: [cold, hot]\nimport: [tests.jobmods.basic]\nstartsecs: 0.2\n"


def split(master: Master, name: str = "a") -> Counter:
    """queue -> running children forked to serve it alone."""
    found = master.program(name)["processes"]
    return Counter(",".join(p["queues"] or ["all"]) for p in found if p["state"] == "running")


def busy_queues(master: Master) -> list[tuple[str, str]]:
    """(the child's own queue, the queue of the job it runs) for each busy child."""
    return [(",".join(p["queues"] or ["all"]), p["job"]["queue"])
            for p in master.program("a")["processes"] if p["job"]]


def test_simple_splits_children_evenly_and_each_serves_its_queue(short_tmp: Path,
                                                                 redis_url: str) -> None:
    with Master(short_tmp, redis_url, {"a": BASE + "numprocs: 4\nbalance: simple\n"}) as m:
        m.wait_running("a", 4)
        assert split(m) == {"cold": 2, "hot": 2}
        for _ in range(8):
            dispatch("tests.sleep", 1.0, queue="hot")
        wait_until(lambda: len(busy_queues(m)) == 2, timeout=10, message="2 busy")
        assert busy_queues(m) == [("hot", "hot"), ("hot", "hot")], \
            "the cold children never take a hot job"
        m.call("scale", program="a", numprocs=5)
        wait_until(lambda: split(m) == {"cold": 3, "hot": 2}, timeout=10,
                   message=f"5 children split 3/2: {split(m)}")


def test_auto_shifts_children_toward_the_busy_queue_and_back(short_tmp: Path,
                                                            redis_url: str) -> None:
    program = (BASE + "balance: auto\nmin_per_queue: 1\n"
               "autoscale: {min: 4, max: 4, cooldown: 0.5}\n")
    with Master(short_tmp, redis_url, {"a": program}) as m:
        m.wait_running("a", 4)
        assert split(m) == {"cold": 2, "hot": 2}, "no work yet: even"
        for _ in range(60):
            dispatch("tests.sleep", 0.2, queue="hot")
        wait_until(lambda: split(m) == {"cold": 1, "hot": 3}, timeout=15,
                   message=f"3 children on hot: {split(m)}")
        assert "a: recycling a#" in m.log.read_text(), "a child was recycled to move it"
        wait_until(lambda: split(m) == {"cold": 2, "hot": 2}, timeout=20,
                   message=f"drained: back to even: {split(m)}")
