"""Microseconds per no-op job for the worker's two job lines and its done record alone
(JobLog's start and end lines through the stderr handler into /dev/null, and
jobrecord.done_entry), at full speed: best of --rounds runs of --jobs jobs.

    .venv/bin/python bench/joblines.py [--jobs 30000] [--rounds 5]

SQ_BENCH_PATH=DIR measures another checkout's supervisor_q in a subprocess alongside
this one's, the rounds alternating (a before/after in one run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_round(jobs: int, path: str) -> float:
    """Microseconds per job in this process, with path's supervisor_q."""
    sys.path.insert(0, path)
    import supervisor_q
    from supervisor_q.logs import configure_logging
    from supervisor_q.queue import payload as payloads
    from supervisor_q.queue.backend import Reserved
    from supervisor_q.worker import jobrecord
    from supervisor_q.worker.joblog import JobLog
    from supervisor_q.worker.report import NullReporter
    assert supervisor_q.__file__.startswith(path), supervisor_q.__file__
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (the lines: written, not kept)
    configure_logging()
    joblog = JobLog(NullReporter(), "bench")
    encoded = payloads.encode(payloads.build("bench.sq_jobs:noop", "bench", [], {}))
    decoded = payloads.decode(encoded)
    held = [Reserved("bench", payloads.new_job_id(), encoded, 1, 0, 0.0) for _ in range(100)]
    began = time.perf_counter()
    for i in range(jobs):
        job = held[i % 100]
        joblog.job_started(job.id, decoded.job, "bench", 60.0, 1, 0.0)
        jobrecord.done_entry(job, decoded, time.time(), None, 3600, None)
        joblog.job_finished(job.id, "done")
    joblog.flush()
    return (time.perf_counter() - began) / jobs * 1e6


def measure(path: str, jobs: int) -> float:
    done = subprocess.run([sys.executable, __file__, "--child", str(jobs), path],
                          capture_output=True, text=True, check=True)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(one_round(args.child, args.path))
        return
    paths = {"this checkout": str(ROOT)}
    if os.environ.get("SQ_BENCH_PATH"):
        paths["SQ_BENCH_PATH"] = os.environ["SQ_BENCH_PATH"]
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(args.rounds):  # alternating: the machine's load swings alike
        for name, path in paths.items():
            best[name] = min(best[name], measure(path, args.jobs))
    for name, value in best.items():
        print(f"{name}: {value:.2f} µs per job (2 job lines + done record, best of "
              f"{args.rounds}; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
