"""A master's child against a standalone `supervisor-q work`, and what the master costs it.

    .venv/bin/python bench/master_child.py [--rounds 15] [--jobs 8000] [--against DIR]
    .venv/bin/python bench/master_child.py --switches [--against DIR]

Default: rounds of no-op drains, one worker process, without job lines (`--quiet`,
`log_jobs: false`): `work`, then a master's child, in a rotating order; prints the
median over the rounds of the ratio master's child / `work` within a round, with its
range. --against DIR adds a master's child running another checkout's supervisor_q
(SQ_BENCH_PATH, bench/common.py) to every round: a before/after in one run.

--switches: 80,000 jobs queued, one master's child draining them (job lines on); over
5 s mid-drain, the master's CPU time and the child's voluntary and involuntary context
switches (psutil). A standalone worker is preempted about 100 times in 5 s here; each
extra preemption is the master taking the child's core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from bench.common import SYSTEMS, Pool, agent, drain, start_server  # noqa: E402


def _with_path(path: str | None) -> None:
    os.environ.pop("SQ_BENCH_PATH", None)
    if path:
        os.environ["SQ_BENCH_PATH"] = path


def ratios(url: str, rounds: int, jobs: int, against: str | None, logs: Path) -> None:
    sides = [("sq", None), ("sq-master", None)] + ([("sq-master", against)] if against else [])
    found: dict[tuple[str, str | None], list[float]] = {side: [] for side in sides}
    for n in range(rounds):
        for name, path in sides[n % len(sides):] + sides[:n % len(sides)]:
            _with_path(path)
            system = replace(SYSTEMS[name], quiet=True)
            found[(name, path)].append(drain(system, url, "noop", jobs, 1, logs)["drain_rate"])
        _with_path(None)
        print(f"round {n + 1}, load average {os.getloadavg()[0]:.2f}: "
              + ", ".join(f"{name}{' (' + path + ')' if path else ''} {rates[-1]:,.0f}"
                          for (name, path), rates in found.items()), flush=True)
    work = found[("sq", None)]
    for name, path in sides[1:]:
        paired = sorted(m / w for m, w in zip(found[(name, path)], work, strict=True))
        print(f"master's child{' of ' + path if path else ''} / work: median "
              f"{statistics.median(paired):.3f} (rounds {paired[0]:.2f}-{paired[-1]:.2f})")


def switches(url: str, path: str | None, logs: Path) -> None:
    _with_path(path)
    system = SYSTEMS["sq-master"]
    agent(system, url, "fill", "noop", "80000", "1")
    pool = Pool(system, url, 1, logs)
    try:
        master = psutil.Process(pool.procs[0].pid)
        deadline = time.monotonic() + 30
        while not master.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)  # mid-drain
        child = max(master.children(), key=lambda c: sum(c.cpu_times()[:2]))  # the worker
        cpu, ctx = master.cpu_times(), child.num_ctx_switches()
        time.sleep(5)
        cpu2, ctx2 = master.cpu_times(), child.num_ctx_switches()
    finally:
        pool.stop()
        _with_path(None)
    print(f"{path or 'this checkout'}: over 5 s, the master's CPU "
          f"{cpu2.user + cpu2.system - cpu.user - cpu.system:.2f} s; the child's context "
          f"switches {ctx2.voluntary - ctx.voluntary} voluntary, "
          f"{ctx2.involuntary - ctx.involuntary} involuntary "
          f"(load average {os.getloadavg()[0]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--jobs", type=int, default=8000)
    parser.add_argument("--against", help="another checkout (its directory)")
    parser.add_argument("--switches", action="store_true")
    args = parser.parse_args()
    server, tmp = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="sq-bench-logs-") as logs:
            if args.switches:
                for path in [None] + ([args.against] if args.against else []):
                    switches(server.url, path, Path(logs))
            else:
                ratios(server.url, args.rounds, args.jobs, args.against, Path(logs))
    finally:
        server.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
