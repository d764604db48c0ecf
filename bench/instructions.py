"""Instructions per no-op job, counted by valgrind's callgrind: repeatable whatever else
the machine is doing (a shared 2-core VM swings drain rates 2-3x between rounds).

    .venv/bin/python bench/instructions.py [--quiet] [--prefetch N] [--server] [--batch]

- worker: one worker (the `Worker` loop of `supervisor-q work`, in this process, with
  its job lines unless --quiet) drains N no-op jobs under callgrind, for two N; the
  difference per job is the worker's own user-space instructions (Python, redis-py,
  the job lines), start-up excluded.
- --server: valkey-server itself under callgrind while a client runs the worker's
  RESERVE (the ack of the job before, with its done record, and the reserve of the
  next) over N jobs: the server's instructions per job.
- --batch: the N jobs are one batch's (no callbacks), so each also has its count
  (BATCH_SUCCEEDED, queue/batchack.py) sent with its ack: run with and without it for
  what a batch job costs beyond a plain one. Under callgrind a job runs ~50x slower, so
  acks held a few ms (worker/ahead.py ACK_HOLD) are held less often than at full speed.

SQ_BENCH_PATH=DIR counts another checkout's supervisor_q (a before/after in one run).
Kernel time (system calls) is not counted: `bench/throughput.py --cpu` has it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("SQ_BENCH_PATH") or str(ROOT))
sys.path.insert(1, str(ROOT))

import redis  # noqa: E402

from bench.common import free_port, start_server  # noqa: E402

SMALL, LARGE = 300, 1300
RECORD = ('{"job":"bench.sq_jobs:noop","attempts":1,"dispatched_at":1795642505.538,'
          '"started_at":1795642505.6,"ended_at":1795642505.608,"host":"vm","pid":14411}')


def fill(url: str, jobs: int, batched: bool = False) -> None:
    from supervisor_q.queue import payload as payloads
    from supervisor_q.queue.backend import RedisQueue, connect

    if batched:
        from bench.sq_jobs import noop
        from supervisor_q import batch

        batch([noop.s() for _ in range(jobs)]).dispatch(connection=url)
        return

    pipe = connect(url).pipeline(transaction=False)
    scratch = RedisQueue(pipe)
    for i in range(jobs):
        built = payloads.build("bench.sq_jobs:noop", "bench", [], {})
        scratch.push("bench", built.id, payloads.encode(built))
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()


def drain_here(url: str, quiet: bool, prefetch: int) -> None:
    """The worker loop over the queued jobs, in this process (no guard, no master)."""
    import bench.sq_jobs  # noqa: F401  (registers the jobs)
    from supervisor_q.logs import configure_logging
    from supervisor_q.queue.backend import RedisQueue, connect
    from supervisor_q.worker.joblog import JobLog
    from supervisor_q.worker.loop import Worker, WorkerSettings
    from supervisor_q.worker.report import NullReporter

    sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (the job lines: written, not kept)
    configure_logging()
    settings = WorkerSettings(queues=("bench",), memory=0, sleep=1, stop_when_empty=True,
                              prefetch=prefetch, jitter=0.0, label="bench")
    reporter = NullReporter() if quiet else JobLog(NullReporter(), "bench")
    Worker(settings, RedisQueue(connect(url, socket_timeout=11)), reporter=reporter).run()


def collected(stderr: str) -> int:
    found = re.search(r"Collected : (\d+)", stderr)
    if found is None:
        raise SystemExit(f"no callgrind total in: {stderr[-500:]}")
    return int(found.group(1))


def worker_count(args: argparse.Namespace) -> float:
    totals = []
    for jobs in (SMALL, LARGE):
        server, tmp = start_server()
        try:
            fill(server.url, jobs, args.batch)
            cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                   sys.executable, __file__, "--child", server.url,
                   "--prefetch", str(args.prefetch)] + (["--quiet"] if args.quiet else [])
            done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            totals.append(collected(done.stderr))
        finally:
            server.stop()
            tmp.cleanup()
    return (totals[1] - totals[0]) / (LARGE - SMALL)


def server_count(jobs: int, drain: bool, batched: bool) -> int:
    from supervisor_q.queue.backend import RedisQueue, connect
    from supervisor_q.queue.batchack import BatchCount
    from supervisor_q.queue.jobinfo import Done
    from supervisor_q.queue.server import find_server_binary

    port = free_port()
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         find_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    fill(url, jobs, batched)
    if drain:
        queue = RedisQueue(connect(url))
        queue.who = '"host":"vm","pid":1'
        batch_id = _batch_of(client) if batched else ""
        acks: list = []
        counts: list = []
        while True:
            _, result = queue.reserve("bench", default_timeout=60, ack_ids=acks, counts=counts)
            if not result.jobs:
                break
            acks = [Done(job.id, 3_600_000, RECORD) for job in result.jobs]
            counts = [BatchCount(batch_id, job.id) for job in result.jobs] if batched else []
    try:
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass
    return collected(proc.communicate()[1])


def _batch_of(client: redis.Redis) -> str:
    from supervisor_q.queue.keys import BATCH_INDEX_KEY

    [found] = client.zrange(BATCH_INDEX_KEY, 0, -1)
    return found.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="no job lines")
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--server", action="store_true", help="the server's instructions")
    parser.add_argument("--batch", action="store_true", help="the jobs of one batch")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        drain_here(args.child, args.quiet, args.prefetch)
        return
    which = os.environ.get("SQ_BENCH_PATH") or "this checkout"
    if args.server:
        per_job = (server_count(LARGE, True, args.batch)
                   - server_count(LARGE, False, args.batch)) / LARGE
        print(f"server: {per_job:,.0f} instructions per {'batch ' * args.batch}job (RESERVE "
              f"+ ACK with a done record{' and a count' * args.batch}; {which})")
        return
    print(f"worker: {worker_count(args):,.0f} instructions per no-op {'batch ' * args.batch}job "
          f"(prefetch {args.prefetch}, {'quiet' if args.quiet else 'job lines on'}; {which})")


if __name__ == "__main__":
    main()
