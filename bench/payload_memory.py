"""Redis memory per queued small job: the full version-1 payload against the compact
version-2 payload, in the same run against one private server.

    .venv/bin/python bench/payload_memory.py [--jobs 100000] [--max-bytes 350]

A small job is the benchmark's no-op, `bench.sq_jobs:noop` on queue `bench` with no
arguments, as `noop.dispatch()` builds it (no options: every option field at its
default); a second row gives it one int argument (0..jobs-1). Each form
queues the jobs (pushed through RedisQueue.push_many, as dispatch_many does: payload,
ready list, wake-up token, enqueue time) into an empty database; the figure is INFO
memory's used_memory after minus before, per job, plus MEMORY USAGE of the payloads
hash alone. Exits 1 when the compact form of the small job is above --max-bytes per job.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import start_server  # noqa: E402
from supervisor_q.queue import payload as payloads  # noqa: E402
from supervisor_q.queue.backend import RedisQueue, connect  # noqa: E402

QUEUE = "bench"
CHUNK = 1000


def measure(queue: RedisQueue, jobs: int, encode: Callable[[payloads.Payload], str],
            with_arg: bool) -> tuple[float, float, int]:
    """(used_memory bytes per job, payloads-hash bytes per job, payload length)."""
    queue.client.execute_command("FLUSHDB", "SYNC")
    queue.client.execute_command("MEMORY", "PURGE")
    queue.index_queue(QUEUE)
    before = queue.client.info("memory")["used_memory"]
    length = 0
    for at in range(0, jobs, CHUNK):
        chunk = []
        for n in range(at, min(at + CHUNK, jobs)):
            built = payloads.build("bench.sq_jobs:noop", QUEUE, [n] if with_arg else [], {})
            raw = encode(built)
            length = len(raw)
            chunk.append((built.id, raw, 0.0))
        queue.push_many(QUEUE, chunk)
    after = queue.client.info("memory")["used_memory"]
    hash_bytes = queue.client.memory_usage(queue.keys(QUEUE).payloads, samples=0) or 0
    assert queue.client.llen(queue.keys(QUEUE).ready) == jobs
    return (after - before) / jobs, hash_bytes / jobs, length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--max-bytes", type=float, default=350.0)
    args = parser.parse_args()
    server, _tmp = start_server()
    try:
        queue = RedisQueue(connect(server.url))
        version = queue.client.info("server").get("valkey_version") or \
            queue.client.info("server").get("redis_version")
        print(f"{args.jobs:,} queued small jobs, server {version}")
        print("| job | payload | payload bytes | used_memory per job | payloads hash per job |")
        print("|---|---|---|---|---|")
        results = {}
        for with_arg in (False, True):
            job = "noop(n)" if with_arg else "noop()"
            for form, encode in (("v1 (full)", payloads.encode_v1),
                                 ("v2 (compact)", payloads.encode)):
                per_job, per_hash, length = measure(queue, args.jobs, encode, with_arg)
                results[(with_arg, form)] = per_job
                print(f"| {job} | {form} | {length} | {per_job:.0f} B | {per_hash:.0f} B |")
        for with_arg in (False, True):
            ratio = results[(with_arg, "v2 (compact)")] / results[(with_arg, "v1 (full)")]
            print(f"{'noop(n)' if with_arg else 'noop()'}: compact / full {ratio:.2f}")
    finally:
        server.stop()
    small = results[(False, "v2 (compact)")]
    if small > args.max_bytes:
        print(f"FAIL: {small:.0f} B per small job > {args.max_bytes:g} B")
        sys.exit(1)


if __name__ == "__main__":
    main()
