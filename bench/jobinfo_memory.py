"""Redis memory used by job-lookup done records, per 1,000,000 jobs.

    .venv/bin/python bench/jobinfo_memory.py [--jobs 50000]

Pushes no-op payloads, then reserves and acks them through RedisQueue with the done
record a worker writes (worker/jobrecord.py; no result kept), with the cap above the job
count so nothing is trimmed. Reports INFO memory's used_memory after the drain minus
before it (the records alone: the queue itself is empty both times), per 1,000,000.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import start_server  # noqa: E402
from supervisor_q.queue import payload as payloads  # noqa: E402
from supervisor_q.queue.backend import RedisQueue, connect  # noqa: E402
from supervisor_q.worker import jobrecord  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    args = parser.parse_args()
    server, _tmp = start_server()
    try:
        queue = RedisQueue(connect(server.url))
        jobrecord.identify(queue, args.jobs + 1)
        queue.push("m", "warm", payloads.encode(payloads.build("bench.noop", "m", [], {})))
        queue.reserve("m", default_timeout=60)
        queue.ack("m", "warm")
        queue.client.delete(*[queue.keys("m").recent, queue.keys("m").recent_records])
        before = queue.client.info("memory")["used_memory"]
        for _ in range(0, args.jobs, 1000):
            for _ in range(1000):
                built = payloads.build("bench.sq_jobs:noop", "m", [], {})
                queue.push("m", built.id, payloads.encode(built))
            for _ in range(1000):
                _, got = queue.reserve("m", default_timeout=60)
                job = got.jobs[0]
                entry = jobrecord.done_entry(job, payloads.decode(job.payload), time.time(),
                                             None, 3600.0, None)
                queue.ack("m", entry)
        after = queue.client.info("memory")["used_memory"]
        per = (after - before) / args.jobs
        print(f"{args.jobs} done records: {after - before:,} bytes, {per:.0f} bytes/job, "
              f"{per * 1e6 / 2**20:,.0f} MiB per 1,000,000 jobs "
              f"(records: {queue.client.hlen(queue.keys('m').recent_records)})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
