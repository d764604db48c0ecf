"""Profile one `supervisor-q work` process draining no-op jobs, with py-spy.

    .venv/bin/python bench/profile_worker.py [--jobs 20000] [--prefetch N] [--out DIR]

Writes DIR/worker-profile.txt (collapsed stacks, for flamegraph.pl or speedscope) and
prints the functions with the most own time and the most total time per job. py-spy
comes from bench/.venv-peers (bench/requirements-peers.txt).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from bench.common import BENCH, MAIN_PY, PEERS_VENV, ROOT, SYSTEMS, agent, env_for, start_server  # noqa: E402,E501


def summarize(path: Path, jobs: int, top: int = 25) -> str:
    own: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        samples += n
        own[_short(frames[-1])] += n
        for f in set(_short(f) for f in frames):
            total[f] += n
    lines = [f"{samples} samples, {jobs} jobs"]
    lines.append("\nown time (share of samples):")
    lines += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("\ntotal time, including callees:")
    lines += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; keep file:function.
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(file).parts[-2:])})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "worker-profile.txt"
    server, tmp = start_server()
    try:
        url = server.url
        client = redis.Redis.from_url(url)
        agent(SYSTEMS["sq"], url, "fill", "noop", str(args.jobs), "1")
        cmd = [str(PEERS_VENV / "bin" / "py-spy"), "record", "-r", str(args.rate), "-f", "raw",
               "-o", str(out), "--nonblocking", "--subprocesses",  # the guard forks the worker
               "--", str(MAIN_PY), "-m", "supervisor_q",
               "--redis-url", url, "work", "--queue", "bench", "--import", "bench.sq_jobs",
               "--memory", "0", "--sleep", "1", "--prefetch", str(args.prefetch)]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env_for(url), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while client.llen("bench:end") < 1:
            time.sleep(0.02)
        start = float(client.lindex("bench:start", 0))
        end = float(client.lindex("bench:end", 0))
        print(f"drain under py-spy: {args.jobs / (end - start):,.0f} jobs/s")
        os.killpg(proc.pid, signal.SIGINT)  # the worker finishes; py-spy writes its file
        proc.wait(30)
        print(f"collapsed stacks: {out}")
        print(summarize(out, args.jobs))
    finally:
        server.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
