"""The failed store at 100,000 failed jobs: a page of `failed list` (first and last),
`failed retry all` and `failed prune`, the old way (every record loaded, one call per
job) against the new (zset ranks, chunks), in the same run against one private server.

    .venv/bin/python bench/failed_store.py [--jobs 100000] [--queues 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import start_server  # noqa: E402
from supervisor_q.queue.backend import RedisQueue, connect  # noqa: E402
from supervisor_q.queue.failed import record_json  # noqa: E402
from supervisor_q.queue.keys import QUEUES_KEY, QueueKeys  # noqa: E402

PER_PAGE = 50
BASE_MS = int(time.time() * 1000)  # every seeding: the same failed-at times


def seed(queue: RedisQueue, jobs: int, queues: int) -> None:
    queue.client.flushdb()
    names = [f"q{n}" for n in range(queues)]
    queue.client.sadd(QUEUES_KEY, *names)
    pipe = queue.client.pipeline(transaction=False)
    base = BASE_MS - jobs
    for n in range(jobs):
        name, job_id = names[n % queues], f"job-{n:07d}"
        k = QueueKeys(name)
        payload = json.dumps({"id": job_id, "job": "bench.noop", "queue": name, "args": [n]})
        record = {"id": job_id, "job": "bench.noop", "queue": name, "payload": payload,
                  "args": [n], "kwargs": {}, "attempts": 1, "reason": "boom",
                  "exception": "Traceback ...\nRuntimeError: boom", "failed_at": (base + n) / 1000}
        pipe.zadd(k.failed, {job_id: base + n})
        pipe.hset(k.failed_records, job_id, record_json(record))
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def old_page(queue: RedisQueue, page: int) -> list[dict]:
    """The way `failed list --page N` worked: HVALS, parse and sort every record."""
    start = (page - 1) * PER_PAGE
    return queue.failed_records()[start:start + PER_PAGE]


def new_page(queue: RedisQueue, page: int) -> list[dict]:
    return queue.failed_page(None, (page - 1) * PER_PAGE, PER_PAGE)[0]


def old_retry_all(queue: RedisQueue) -> int:
    return sum(queue.retry_failed(r) for r in queue.failed_records())


def old_prune(queue: RedisQueue, older_than: float) -> int:
    count = 0
    for name in queue.known_queues():
        ids = queue.client.zrangebyscore(queue.keys(name).failed, "-inf", int(older_than * 1000))
        for job_id in ids:
            count += queue.forget_failed(name, job_id.decode())
    return count


def timed(fn, *args) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - began, result


def best(fn, *args, times: int = 5) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    runs = [timed(fn, *args) for _ in range(times)]
    return min(r[0] for r in runs), runs[0][1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--queues", type=int, default=4)
    args = parser.parse_args()
    server, tmp = start_server()
    try:
        queue = RedisQueue(connect(server.url))
        seed(queue, args.jobs, args.queues)
        last = -(-args.jobs // PER_PAGE)
        rows = []
        for label, page in (("page 1", 1), (f"page {last} (last)", last)):
            old_s, old = best(old_page, queue, page, times=3)
            new_s, new = best(new_page, queue, page)
            assert [r["id"] for r in old] == [r["id"] for r in new], label
            rows.append((f"`failed list --page N`, {label}", old_s, new_s))
        old_s, n_old = timed(old_retry_all, queue)
        seed(queue, args.jobs, args.queues)
        new_s, n_new = timed(queue.retry_all_failed)
        assert n_old == n_new == args.jobs, (n_old, n_new)
        rows.append(("`failed retry all`", old_s, new_s))
        cutoff = BASE_MS / 1000
        seed(queue, args.jobs, args.queues)
        old_s, n_old = timed(old_prune, queue, cutoff)
        seed(queue, args.jobs, args.queues)
        new_s, n_new = timed(queue.prune_failed, cutoff)
        assert n_old == n_new == args.jobs, (n_old, n_new)
        rows.append(("`failed prune`", old_s, new_s))
    finally:
        server.stop()
        tmp.cleanup()
    print(f"{args.jobs:,} failed jobs in {args.queues} queue(s), {PER_PAGE} per page\n")
    print("| operation | before | after | speed-up |\n|---|---|---|---|")
    for what, old_s, new_s in rows:
        print(f"| {what} | {_ms(old_s)} | {_ms(new_s)} | {old_s / new_s:.0f}x |")
    return 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


if __name__ == "__main__":
    sys.exit(main())
