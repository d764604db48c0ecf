"""No-op drain through a plain URL, a Sentinel URL and a Cluster URL, in one run.

    .venv/bin/python bench/topology_drain.py [--jobs 20000] [--procs 2] [--rounds 2]

Starts 1 primary, 1 replica and 3 sentinels (tests/sentinels.py) and a 3-primary
cluster (tests/clusters.py) on loopback; the plain URL is the Sentinel set's primary. Queues
--jobs no-op jobs, then times --procs `supervisor-q work --stop-when-empty` processes
draining them; the time of the same command on an empty queue (interpreter start,
imports, connect) is subtracted. Rounds alternate plain, Sentinel and Cluster.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor_q.queue import payload as payloads  # noqa: E402
from supervisor_q.queue.backend import RedisQueue, connect  # noqa: E402
from tests.clusters import LocalCluster  # noqa: E402
from tests.sentinels import SentinelSet  # noqa: E402

QUEUE = "bench"


def timed_workers(url: str, procs: int) -> float:
    """Seconds until procs `work --stop-when-empty` processes have all exited."""
    cmd = [sys.executable, "-m", "supervisor_q", "--redis-url", url, "work", "--queue", QUEUE,
           "--import", "tests.jobmods.basic", "--stop-when-empty"]
    started = time.perf_counter()
    running = [subprocess.Popen(cmd, cwd=ROOT) for _ in range(procs)]
    for p in running:
        if p.wait(600) != 0:
            raise SystemExit(f"worker exited {p.returncode}")
    return time.perf_counter() - started


def drain(url: str, jobs: int, procs: int) -> float:
    """No-op jobs per second drained through url."""
    queue = RedisQueue(connect(url))
    queue.client.flushdb()
    idle = timed_workers(url, procs)
    encoded = payloads.encode(payloads.build("tests.noop", QUEUE, [], {}))
    for n in range(jobs):
        queue.push(QUEUE, f"b{n}", encoded)
    seconds = timed_workers(url, procs) - idle
    left = queue.counts(QUEUE)
    queue.close()
    if left["ready"] or left["reserved"]:
        raise SystemExit(f"not drained: {left}")
    return jobs / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sq-bench-topology-") as tmp:
        for part in ("sentinel", "cluster"):
            (Path(tmp) / part).mkdir()
        deployment = SentinelSet(Path(tmp) / "sentinel")
        deployment.start()
        cluster = LocalCluster(Path(tmp) / "cluster")  # its ports chosen once those are taken
        try:
            cluster.start()
            urls = {"plain": f"redis://127.0.0.1:{deployment.master_port()}/0",
                    "sentinel": deployment.url, "cluster": cluster.url}
            rates: dict[str, list[float]] = {name: [] for name in urls}
            for _ in range(args.rounds):
                for name, url in urls.items():
                    rates[name].append(drain(url, args.jobs, args.procs))
        finally:
            cluster.stop()
            deployment.stop()
    for name, found in rates.items():
        print(f"{name:>8}: {args.jobs} no-op jobs, {args.procs} worker process(es): "
              f"drain {statistics.median(found):,.0f} jobs/s "
              f"(rounds: {', '.join(f'{r:,.0f}' for r in found)})")


if __name__ == "__main__":
    main()
