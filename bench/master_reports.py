"""The master's work per job of a child: its report lines and its two job lines, read
from real pipes and applied as one of the arbiter's wakes does (ReportReader.read, then
OutputCapture.read: the deadlines, the metrics' counts, the lines into the master's log).

    .venv/bin/python bench/master_reports.py [--jobs 200] [--wakes 60]
    .venv/bin/python bench/master_reports.py --callgrind

A wake finds --jobs jobs' worth in the pipes (200: a child at 4,000 jobs/s over the
master's 50 ms rest, master/reports.py REPORT_BATCH), written beforehand by the child's
own PipeReporter. Prints the CPU time per job (best wake, time.process_time), or with
--callgrind the instructions per job (valgrind, the difference between 10 and 40 wakes,
less what writing the pipes and emptying them costs): repeatable whatever else the
machine does. SQ_BENCH_PATH=DIR measures another checkout (before/after in one run).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("SQ_BENCH_PATH") or str(ROOT))

LINE = (b"INFO supervisor_q.jobs: bench.sq_jobs:noop 01KA2B3C4D5E6F7G8H9J%06d started "
        b"(attempt 1)\nINFO supervisor_q.jobs: bench.sq_jobs:noop 01KA2B3C4D5E6F7G8H9J%06d "
        b"done in 0.1 ms\n")


class _Spawner:
    """Pool's spawner, forking nothing: the child exists only as its pipes here."""

    def spawn(self, program, child, paused):  # noqa: ANN001, ANN201
        from supervisor_q.master.spawn import Spawned
        return Spawned(4242, 4242, None)

    def kill(self, pgid: int, sig: int) -> None:
        pass

    def ready(self, pool, now: float) -> bool:  # noqa: ANN001
        return True


def measure(jobs: int, wakes: int, drain_only: bool) -> float:
    """Seconds of CPU per job of the best wake."""
    from supervisor_q.clock import Clock
    from supervisor_q.config.schema import WorkerProgram
    from supervisor_q.logs import configure_logging
    from supervisor_q.master.pool import Pool
    from supervisor_q.master.reports import ReportReader
    from supervisor_q.master.wakeup import Wakeup
    from supervisor_q.observe.counters import Counters
    from supervisor_q.worker.report import PipeReporter

    configure_logging()  # the master's plain text log, to /dev/null
    logging.getLogger().handlers[0].stream = open(os.devnull, "w")  # noqa: SIM115
    pool = Pool(WorkerProgram.model_validate({"name": "bench", "queues": ["bench"]}),
                _Spawner(), target=1)
    pool.tick(0.0)
    [child] = pool.children
    pool.child_ready(child, None)
    reader = ReportReader(Wakeup(), Clock())
    reader.counters = Counters()  # metrics on, as by default
    report_r, report_w = os.pipe()
    out_r, out_w = os.pipe()
    for fd in (report_r, out_r):
        os.set_blocking(fd, False)
    run = pool.run_of(child)
    run.fd, run.outputs = report_r, {"stdout": out_r}
    reporter = PipeReporter(report_w)
    reporter.hold_finishes(1.0)  # as a worker under a master: a finish rides with a start
    lines = b"".join(LINE % (i, i) for i in range(jobs))
    best = float("inf")
    for _ in range(wakes):
        for i in range(jobs):
            job_id = f"01KA2B3C4D5E6F7G8H9J{i:06d}"
            reporter.job_started(job_id, "bench.sq_jobs:noop", "bench", 30.0, 1, 0.012)
            reporter.job_finished(job_id, "done")
        os.write(out_w, lines)
        started = time.process_time()
        if drain_only:
            for fd in (report_r, out_r):
                while len(os.read(fd, 1 << 20)) == 1 << 20:
                    pass
        else:
            reader.read(pool, child)
            reader.output.read(pool, child)
        best = min(best, time.process_time() - started)
    return best / jobs


def callgrind(jobs: int) -> float:
    def total(wakes: int, drain_only: bool) -> int:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, "--jobs", str(jobs), "--wakes", str(wakes)]
        done = subprocess.run(cmd + (["--drain-only"] if drain_only else []),
                              capture_output=True, text=True, env=os.environ, check=True)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"no callgrind total in: {done.stderr[-500:]}")
        return int(found.group(1))

    per_job = [(total(40, d) - total(10, d)) / (30 * jobs) for d in (False, True)]
    return per_job[0] - per_job[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per wake")
    parser.add_argument("--wakes", type=int, default=60)
    parser.add_argument("--callgrind", action="store_true", help="instructions per job")
    parser.add_argument("--drain-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    where = os.environ.get("SQ_BENCH_PATH") or str(ROOT)
    if args.callgrind:
        print(f"{where}: {callgrind(args.jobs):,.0f} instructions per job in the master")
        return
    seconds = measure(args.jobs, args.wakes, args.drain_only)
    print(f"{where}: {seconds * 1e6:.1f} µs of the master's CPU per job (best of "
          f"{args.wakes} wakes of {args.jobs} jobs; load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
