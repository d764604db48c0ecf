"""supervisor-q alone: push 20,000 no-op jobs, drain them with 1 and with 2 worker
processes, print enqueue and drain jobs/s.

    .venv/bin/python bench/throughput.py [--jobs 20000] [--procs 1,2] [--prefetch N]

Workers are `supervisor-q work` processes (bench/common.py has the exact command); the
server is a private valkey/redis-server on a free loopback port.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SYSTEMS, drain, start_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--prefetch", action="store_true", help="workers use --prefetch 16")
    args = parser.parse_args()
    system = SYSTEMS["sq-prefetch" if args.prefetch else "sq"]
    server, tmp = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="sq-bench-logs-") as logs:
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
