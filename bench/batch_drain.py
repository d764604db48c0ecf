"""Draining batch jobs against plain jobs: one worker (in this process) drains N no-op
jobs dispatched one by one, then N no-op jobs of one batch, against one private server
in the same run; prints both rates and their ratio, best of each and the median of the
rounds' ratios (the target is 0.8 or better).

    .venv/bin/python bench/batch_drain.py [--jobs 20000] [--rounds 3] [--profile]

--profile prints cProfile's top functions of one batch drain (own time per job).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from bench.common import start_server  # noqa: E402
from supervisor_q import batch, job  # noqa: E402
from supervisor_q.jobs import dispatching  # noqa: E402
from supervisor_q.queue.backend import RedisQueue, connect  # noqa: E402
from supervisor_q.worker.loop import Worker  # noqa: E402
from supervisor_q.worker.settings import WorkerSettings  # noqa: E402


@job(name="bench.batch_noop", queue="bench")
def noop(n: int) -> None:
    pass


def fill(url: str, jobs: int, batched: bool) -> None:
    if batched:
        batch([noop.s(n) for n in range(jobs)], name="bench").dispatch(connection=url)
    else:
        noop.dispatch_many(((n,) for n in range(jobs)), connection=url)


def drain(url: str, prefetch: int) -> tuple[float, float]:
    """Seconds one worker takes to empty the queue, and the CPU seconds it used."""
    queue = RedisQueue(connect(url))
    settings = WorkerSettings(queues=("bench",), memory=0, stop_when_empty=True, sleep=0.1,
                              keep_jobs=0, log_jobs=False, prefetch=prefetch)
    worker = Worker(settings, queue)
    started, cpu = time.perf_counter(), time.process_time()
    worker.run()
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    queue.close()
    return took, cpu


def rates(url: str, jobs: int, prefetch: int,
          rounds: int) -> dict[bool, list[tuple[float, float]]]:
    """Per kind (batched or not): each round's jobs/s and worker CPU µs per job, plain
    and batch rounds alternating so both see the same machine."""
    found: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    client = redis.Redis.from_url(url)
    for _ in range(rounds):
        for batched in (False, True):
            client.flushdb()
            fill(url, jobs, batched)
            took, cpu = drain(url, prefetch)
            found[batched].append((jobs / took, cpu / jobs * 1e6))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    server, tmp = start_server()
    try:
        url = server.url
        dispatching.bind(RedisQueue(connect(url)))
        if args.profile:
            redis.Redis.from_url(url).flushdb()
            fill(url, args.jobs, True)
            prof = cProfile.Profile()
            prof.runcall(drain, url, args.prefetch)
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)
            return
        found = rates(url, args.jobs, args.prefetch, args.rounds)
        print(f"{args.jobs} no-op jobs, one worker, prefetch {args.prefetch}, "
              f"{args.rounds} rounds (alternating): best (median)")
        for batched, kind in ((False, "plain"), (True, "batch")):
            rate, cpu = zip(*found[batched], strict=True)
            print(f"{kind} jobs: {max(rate):9,.0f} ({median(rate):,.0f}) jobs/s  "
                  f"{min(cpu):5.0f} ({median(cpu):.0f}) µs worker CPU per job")
        ratios = [b[0] / p[0] for p, b in zip(found[False], found[True], strict=True)]
        best = max(r for r, _ in found[True]) / max(r for r, _ in found[False])
        print(f"ratio batch/plain: {best:.2f} best of each, {median(ratios):.2f} median "
              f"of the rounds' ratios")
    finally:
        server.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
