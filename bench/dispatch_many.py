"""Producing jobs from one process: single dispatch() (the old pool path and the new
kept connection) against dispatch_many and batch dispatch (chunks of 1,000 per script
call), in the same run against one private server.

    .venv/bin/python bench/dispatch_many.py [--jobs 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import start_server  # noqa: E402
from supervisor_q import batch, job  # noqa: E402
from supervisor_q.jobs import dispatching  # noqa: E402
from supervisor_q.queue import lua  # noqa: E402
from supervisor_q.queue import payload as payloads  # noqa: E402
from supervisor_q.queue.ids import raw  # noqa: E402
from supervisor_q.queue.keys import QUEUES_KEY  # noqa: E402


@job(name="bench.noop", queue="bench")
def noop(n: int) -> None:
    pass


def pool_dispatch(url: str, jobs: int) -> None:
    """What dispatch() did before: PUSH through redis-py's client (pool checkout per
    call), the queue indexed once."""
    queue = dispatching.queue_for(url)
    script = queue.client.register_script(lua.PUSH)
    queue.client.sadd(QUEUES_KEY, "bench")
    k = queue.keys("bench")
    keys = [k.ready, k.notify, k.delayed, k.payloads, k.enqueued, k.attempts]
    for n in range(jobs):
        built = noop.payload([n], {})
        script(keys=keys, args=[raw(built.id), raw(payloads.encode(built)), 0, 0])


def kept_dispatch(url: str, jobs: int) -> None:
    for n in range(jobs):
        noop.dispatch(n, connection=url)


def many(url: str, jobs: int) -> None:
    noop.dispatch_many(((n,) for n in range(jobs)), connection=url)


def batched(url: str, jobs: int) -> None:
    batch([noop.s(n) for n in range(jobs)]).dispatch(connection=url)


def rate(fn, url: str, jobs: int, rounds: int) -> float:  # type: ignore[no-untyped-def]
    """The best jobs/s of rounds runs, each on an emptied server."""
    best = 0.0
    for _ in range(rounds):
        dispatching.queue_for(url).client.flushdb()
        began = time.perf_counter()
        fn(url, jobs)
        best = max(best, jobs / (time.perf_counter() - began))
        assert dispatching.queue_for(url).size("bench") == jobs
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server, tmp = start_server()
    try:
        rows = [(label, rate(fn, server.url, args.jobs, args.rounds)) for label, fn in (
            ("`dispatch()`, one job per call, through redis-py's pool (before)", pool_dispatch),
            ("`dispatch()`, one job per call, kept connection (now)", kept_dispatch),
            ("`Job.dispatch_many(...)`, chunks of 1,000", many),
            ("`batch([...]).dispatch()`, chunks of 1,000", batched))]
    finally:
        server.stop()
        tmp.cleanup()
    base = rows[0][1]
    print(f"{args.jobs:,} no-op jobs from one process, best of {args.rounds}\n")
    print("| how | jobs/s | vs before |\n|---|---|---|")
    for label, per_s in rows:
        print(f"| {label} | {per_s:,.0f} | {per_s / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
