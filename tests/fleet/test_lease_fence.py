"""The child-side fence (worker/fence.py) with real masters on one Redis: a child of a
stalled master stops its job before another master may run it, so the two runs never
overlap, and the job completes exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from supervisor_q.jobs.registry import dispatch
from tests.helpers import gone, wait_until
from tests.masters import Master

pytestmark = pytest.mark.slow

LEASE = 6.0  # the shortest lease allowed (3 beats): the fence falls 1.5 s before it
ENV = {"SUPERVISOR_Q_FLEET_LEASE": str(LEASE)}
PROGRAM = """\
queues: [leaseq]
import: [tests.jobmods.fleetjobs]
numprocs: 1
tries: 1
timeout: 60
startsecs: 0.2
"""


def marks(path: Path) -> list[tuple[str, int, int, float, str]]:
    """(kind, pid, attempts, monotonic time, extra) of every complete line."""
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        kind, pid, attempts, at, *extra = line.split(" ")
        found.append((kind, int(pid), int(attempts), float(at), " ".join(extra).strip()))
    return found


@pytest.mark.parametrize("preload", [False, True], ids=["forked", "preloaded"])
def test_a_stalled_masters_child_stops_its_job_before_another_master_runs_it(
        short_tmp: Path, redis_url: str, preload: bool) -> None:
    """SIGSTOP only the master whose child runs a 7 s job; the child runs on. Its lease
    runs out: the child kills its job (and the job's subprocess) by itself, the other
    master claims the stalled one and runs the job, attempts unchanged, starting after
    the first run's last mark. SIGCONT: the master rejoins with a fresh child, no FATAL.
    A preloaded program's children (forked by its zygote) share the master's lease too."""
    program = PROGRAM + ("preload: true\n" if preload else "")
    out = short_tmp / "marks.log"
    (short_tmp / "a").mkdir()
    (short_tmp / "b").mkdir()
    with Master(short_tmp / "a", redis_url, {"p": program}, extra_env=ENV) as one, \
            Master(short_tmp / "b", redis_url, {"p": program}, extra_env=ENV) as two:
        one.wait_running("p", 1)
        two.wait_running("p", 1)
        dispatch("fleet.marked", str(out), 70, queue="leaseq")
        wait_until(lambda: [m for m in marks(out) if m[0] == "start"], message="job started")
        [(_, first, _, _, helper)] = [m for m in marks(out) if m[0] == "start"]
        victim, other = (one, two) if first in one.pids("p") else (two, one)
        master = psutil.Process(victim.proc.pid)
        master.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: gone(first), timeout=15, interval=0.05,
                       message="the stalled master's child stopped its job by itself")
            # (its SIGKILL went to the group before the child's exit; on a loaded machine it
            # may land a moment after the child is gone)
            wait_until(lambda: gone(int(helper)), timeout=5, interval=0.05,
                       message="the job's own subprocess to end with the fence")
            ended = wait_until(lambda: [m for m in marks(out) if m[0] == "end"], timeout=30,
                               interval=0.2, message="the job ran to completion elsewhere")
        finally:
            master.send_signal(signal.SIGCONT)
        runs = marks(out)
        second = next(m for m in runs if m[0] == "start" and m[1] != first)
        last_of_first = max(m[3] for m in runs if m[1] == first)
        assert last_of_first < second[3], "the two runs overlapped"
        assert second[1] in other.pids("p") and second[2] == 1  # attempt given back
        assert [m[1] for m in ended] == [second[1]]  # completed once, by the other master
        print(f"first run's last mark -> second run's start: {second[3] - last_of_first:.2f}s")
        wait_until(lambda: "was declared dead by another" in victim.tail(200), timeout=10,
                   message="the stalled master noticed it was claimed")
        [fresh] = victim.wait_running("p", 1)
        assert fresh != first and os.getpid() != fresh
        assert "FATAL" not in victim.tail(100_000)
        assert len([m for m in marks(out) if m[0] == "end"]) == 1
