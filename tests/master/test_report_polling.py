"""A busy child's report pipe is read on the master's clock, not watched: its writes do
not wake the master (master/reports.py). An idle child's pipe is watched again."""

from __future__ import annotations

import os
import time

from supervisor_q.clock import Clock
from supervisor_q.config.schema import WorkerProgram
from supervisor_q.master.pool import Pool
from supervisor_q.master.reports import REPORT_BATCH, ReportReader
from supervisor_q.master.spawn import Spawned
from supervisor_q.master.wakeup import Wakeup
from supervisor_q.worker.report import PipeReporter


class PipeSpawner:
    """Forks nothing: the "child" is this test writing on a real report pipe."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)

    def spawn(self, program, child, paused) -> Spawned:
        return Spawned(4242, 4242, self.read_fd)

    def kill(self, pgid: int, sig: int) -> None:
        pass

    def ready(self, pool, now) -> bool:
        return True


def _woken(wakeup: Wakeup) -> bool:
    """Whether a watched fd is readable now (what would wake the arbiter)."""
    return any(getattr(e, "tag", (None,))[0] == "child" for e in wakeup.wait(0))


def test_a_busy_childs_pipe_is_read_on_the_clock_and_an_idle_ones_watched() -> None:
    spawner = PipeSpawner()
    program = WorkerProgram.model_validate({"name": "w", "queues": ["q"]})
    pool = Pool(program, spawner, target=1)
    pool.tick(time.monotonic())
    [child] = pool.children
    reader = ReportReader(Wakeup(signals=()), Clock())
    child_side = PipeReporter(spawner.write_fd)
    try:
        reader.register(pool, child, time.monotonic())  # a new child: watched at once
        child_side.job_started("a", "tests.noop", "q", 30.0, 1)
        assert _woken(reader.wakeup)
        reader.ready(pool, child)  # read, then rested for REPORT_BATCH
        assert child.job is not None and child.job.id == "a"
        run = pool.run_of(child)

        child_side.job_finished("a")
        child_side.job_started("b", "tests.noop", "q", 30.0, 1)
        reader.register(pool, child, run.rearm_at)  # the rest is over: reads, finds some
        assert child.job is not None and child.job.id == "b"
        assert not run.registered, "a busy child's pipe is not watched"
        grid = run.rearm_at / REPORT_BATCH
        assert abs(grid - round(grid)) < 1e-6, "busy pipes are read on one shared grid"
        child_side.job_finished("b")
        child_side.job_started("c", "tests.noop", "q", 30.0, 1)
        assert not _woken(reader.wakeup), "the child's writes wake nobody"

        reader.register(pool, child, run.rearm_at)
        assert child.job is not None and child.job.id == "c"
        assert not run.registered
        reader.register(pool, child, run.rearm_at)  # nothing came meanwhile: idle
        assert run.registered, "an idle child's pipe is watched again"
        child_side.job_finished("c")
        assert _woken(reader.wakeup), "so its next report wakes the master at once"
    finally:
        reader.close(pool, child)
        reader.wakeup.close()
        os.close(spawner.write_fd)
