"""Redis memory held by the per-minute metric buckets for 1,000,000 jobs spread over the
default 24 h retention: one queue, --names job names, done and failed outcomes.

    .venv/bin/python bench/metrics_memory.py [--jobs 1000000] [--names 5]

The counts go through the master's own code (observe.counters.Counters, then
observe.buckets.flush, one flush per simulated minute); the figure is the server's
used_memory after minus before. Bucket memory grows with queues x names x minutes kept,
not with jobs: 10x the jobs in the same minutes costs the same.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from bench.common import start_server  # noqa: E402
from supervisor_q.observe.buckets import flush  # noqa: E402
from supervisor_q.observe.counters import Counters  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--names", type=int, default=5)
    parser.add_argument("--minutes", type=int, default=24 * 60)
    args = parser.parse_args()
    server, tmp = start_server()
    client = redis.Redis.from_url(server.url)
    try:
        before = client.info("memory")["used_memory"]
        per_minute = args.jobs // args.minutes
        first = 29_000_000  # an epoch minute
        for minute in range(first, first + args.minutes):
            counters = Counters()
            for i in range(per_minute):
                name = f"app.jobs.job_{i % args.names}"
                counters.started("default", name, 0.01, minute)
                outcome = "failed" if i % 50 == 0 else "done"
                counters.finished("default", name, outcome, 0.02, minute)
            flush(client, counters.take_pending(), retention=24 * 3600)
        after = client.info("memory")["used_memory"]
        keys, fields = client.dbsize(), sum(client.hlen(k) for k in client.scan_iter())
        print(f"{per_minute * args.minutes:,} jobs over {args.minutes} minutes, 1 queue, "
              f"{args.names} job names: {keys} keys, {fields:,} fields, "
              f"{(after - before) / 2**20:.2f} MiB of Redis memory")
    finally:
        client.close()
        server.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
