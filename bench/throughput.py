"""supervisor-q alone: push 20,000 no-op jobs, drain them with 1 and with 2 worker
processes, print enqueue and drain jobs/s.

    .venv/bin/python bench/throughput.py [--jobs 20000] [--procs 1,2] [--prefetch N]
    .venv/bin/python bench/throughput.py --targets [--rounds 3] [--jobs 20000]

Workers are `supervisor-q work` processes (bench/common.py has the exact command); the
server is a private valkey/redis-server on a free loopback port.

--targets measures the hot path's targets in one run, on one server, rounds
interleaved, the drains in a rotating order: the standalone 1-process no-op drain
against Huey's (bench/.venv-peers, as bench/run.py makes it) and against the
one-round-trip loop of bench/limit.py (cycle x1); a master's child against the
standalone drain; 1 process with --prefetch 16; and 10 ms jobs on 8 standalone
processes against the ideal 800 jobs/s. supervisor-q runs without its job lines
(`--quiet`, `log_jobs: false`), as Huey's `-q` logs no line per task and the loop none;
--job-lines keeps them. It prints the ratios the targets name, each the median over the
rounds of the ratio within a round, with its range, and two floors from the same run
(bench/limit.py): the 10 ms jobs drained by 8 bare fetch-ahead loops (what any Python
worker reaches on this machine), and the RESERVE script taking 16 jobs a call in a loop
that runs none (the ceiling of prefetch 16), or runs each as the least a Python worker
with a per-job alarm would (parse, alarm, call).

--cpu prints the CPU time per no-op job (user + system, from /proc) of the worker
process and, for a master's child, of the master: steadier than rates on a shared
machine. SQ_BENCH_PATH=DIR runs another checkout's supervisor_q (bench/common.py), for
a before/after in one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import redis  # noqa: E402

from bench import limit  # noqa: E402
from bench.common import (  # noqa: E402
    PEERS_PY,
    SYSTEMS,
    Pool,
    agent,
    drain,
    drain_warm,
    start_server,
    wait_marks,
)
from supervisor_q.queue.backend import connect  # noqa: E402


def targets(url: str, jobs: int, rounds: int, logs: Path, job_lines: bool) -> None:
    """Every figure once per round, the drains in a rotating order; each ratio is taken
    within a round (both sides seconds apart on the same server) and summed up as the
    median over the rounds, with its range. On a shared machine a drain's rate swings
    by half from one round to the next: a best-of figure picks the luckiest round of
    each side, a median of paired ratios does not."""
    figures: dict[str, list[float]] = {}

    def keep(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)
        print(f"  {name}: {value:,.0f}", flush=True)

    with_huey = PEERS_PY.exists()
    if not with_huey:
        print(f"no {PEERS_PY}: Huey skipped (bench/run.py makes that environment)")
    drains = ["sq", "sq-master", "sq-prefetch"] + (["huey"] if with_huey else [])
    systems = {name: replace(SYSTEMS[name], quiet=not job_lines) for name in drains}
    print("supervisor-q " + ("with its job lines (two per job)" if job_lines else
                             "without job lines (`--quiet`), as Huey's `-q` logs none"))
    for n in range(rounds):
        print(f"round {n + 1}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        client = connect(url)
        keep("one-round-trip loop (cycle x1)", limit.cycle_one(client, jobs))
        client.close()
        for name in drains[n % len(drains):] + drains[:n % len(drains)]:
            keep(SYSTEMS[name].label, drain(systems[name], url, "noop", jobs, 1, logs)
                 ["drain_rate"])
        keep("10 ms jobs, 8 processes", drain_warm(systems["sq"], url, "sleep10", 2000, 8,
                                                   logs)["drain_rate"])
        keep("10 ms jobs, 8 bare fetch-ahead loops", limit.sleep_loop(url))
        keep("bare reserve x16 loop (no job run)", limit.sq_reserve(url, jobs, 16))
        keep("bare reserve x16 loop running each job", limit.sq_reserve(url, jobs, 16, run=True))

    def ratio(top: str, bottom: str, scale: float = 1.0) -> str:
        paired = sorted(a / b / scale for a, b in zip(figures[top], figures[bottom],
                                                       strict=True))
        return (f"{statistics.median(paired):.2f} (rounds {paired[0]:.2f}-{paired[-1]:.2f})")

    print(f"\nmedian of {rounds} round(s), {jobs:,} no-op jobs per drain; load average now "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name, values in figures.items():
        print(f"  {name}: {statistics.median(values):,.0f} jobs/s "
              f"(rounds {min(values):,.0f}-{max(values):,.0f})")
    if with_huey:
        print(f"standalone / Huey: {ratio('supervisor-q', 'Huey')} (target >= 2.0)")
    print("standalone / one-round-trip loop: "
          f"{ratio('supervisor-q', 'one-round-trip loop (cycle x1)')} (target >= 0.80)")
    print(f"master child / standalone: {ratio('supervisor-q (master)', 'supervisor-q')} "
          "(target >= 0.95)")
    print(f"prefetch 16, 1 process: "
          f"{statistics.median(figures['supervisor-q prefetch 16']):,.0f} jobs/s (target >= "
          "15,000); against the reserve x16 script alone in a loop, no job run: "
          f"{ratio('supervisor-q prefetch 16', 'bare reserve x16 loop (no job run)')}; "
          "against that loop running each job (parse, alarm, call): "
          f"{ratio('supervisor-q prefetch 16', 'bare reserve x16 loop running each job')}")
    eight = "10 ms jobs, 8 processes"
    print(f"10 ms jobs, 8 processes, of 800/s: "
          f"{statistics.median(figures[eight]) / 800:.1%} (target >= 95%); against 8 bare "
          f"fetch-ahead loops: {ratio(eight, '10 ms jobs, 8 bare fetch-ahead loops')}")


def cpu_per_job(name: str, url: str, jobs: int, logs: Path) -> tuple[float, float]:
    """(worker, master) CPU microseconds per no-op job, one worker process, timed from
    an idle pool to the drain's end (start-up excluded); master 0 without one."""
    client = redis.Redis.from_url(url)
    client.flushall()
    pool = Pool(SYSTEMS[name], url, 1, logs)
    try:
        pool.wait_idle()
        masters, workers = pool.processes()
        if not SYSTEMS[name].has_master:  # `work`: the guard is a parent, not the worker
            masters = []

        def cpu(procs: list[psutil.Process]) -> float:
            return sum(sum(p.cpu_times()[:2]) for p in procs)

        before = cpu(workers), cpu(masters)
        agent(SYSTEMS[name], url, "fill", "noop", str(jobs), "1")
        wait_marks(client, 1, pool, 300)
        after = cpu(workers), cpu(masters)
    finally:
        pool.stop()
        client.flushall()
        client.close()
    return tuple(1e6 * (a - b) / jobs for a, b in zip(after, before, strict=True))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--prefetch", action="store_true", help="workers use --prefetch 16")
    parser.add_argument("--targets", action="store_true", help="the hot path's targets")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--job-lines", action="store_true",
                        help="--targets: supervisor-q with its job lines (default: --quiet)")
    parser.add_argument("--cpu", action="store_true", help="CPU per job, `work` and master")
    args = parser.parse_args()
    system = SYSTEMS["sq-prefetch" if args.prefetch else "sq"]
    server, tmp = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="sq-bench-logs-") as logs:
            if args.targets:
                targets(server.url, args.jobs, args.rounds, Path(logs), args.job_lines)
                return
            if args.cpu:
                for _ in range(args.rounds):
                    for name in ("sq", "sq-master", "sq-prefetch"):
                        worker, master = cpu_per_job(name, server.url, args.jobs, Path(logs))
                        print(f"{SYSTEMS[name].label}: {worker:.0f} µs of worker CPU per job"
                              + (f", {master:.0f} µs of the master's" if master else ""),
                              flush=True)
                return
            for procs in (int(p) for p in args.procs.split(",")):
                r = drain(system, server.url, "noop", args.jobs, procs, Path(logs))
                print(f"{system.label}: {args.jobs} no-op jobs, {procs} worker process(es): "
                      f"enqueue {r['enqueue_rate']:,.0f} jobs/s, "
                      f"drain {r['drain_rate']:,.0f} jobs/s ({r['drain_s']:.2f} s)"
                      + (f"; NOT ACKED after the drain: {r['unacked']}" if r["unacked"] else ""))
    finally:
        server.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
