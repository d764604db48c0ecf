"""Figures for Redis Cluster (README, "Redis Cluster"): the hot path's no-op drain on a
plain URL and a cluster URL, and how long an idle worker takes to see a job in its
first queue and in a queue on another node (each slot has its own BLPOP, all waited on
at once: queue/slotwait.py). Starts its own servers on loopback.

    .venv/bin/python bench/cluster_figures.py [JOBS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor_q.queue.backend import RedisQueue, connect  # noqa: E402
from supervisor_q.queue.keys import QueueKeys  # noqa: E402
from supervisor_q.queue.server import RedisServer  # noqa: E402
from tests.clusters import LocalCluster, free_ports  # noqa: E402


def drain(url: str, jobs: int) -> float:
    """Jobs per second: push jobs, then reserve each with the previous ack riding along."""
    queue = RedisQueue(connect(url))
    for i in range(jobs):
        queue.push("bench", f"j{i}", '{"v":1,"timeout":60}')
    started = time.perf_counter()
    ack: list[str] = []
    while True:
        _, result = queue.reserve("bench", default_timeout=60, ack_ids=ack)
        if not result.jobs:
            break
        ack = [result.jobs[0].id]
    return jobs / (time.perf_counter() - started)


def wake_latency(url: str, first: str, other: str, target: str, rounds: int) -> list[float]:
    """Seconds from push (into target) to reserve by an idle worker on [first, other]."""
    queue, producer = RedisQueue(connect(url)), RedisQueue(connect(url))
    seen: list[float] = []
    pushed: dict[str, float] = {}
    done = threading.Event()

    def worker() -> None:
        while not done.is_set():
            for name in (first, other):
                _, result = queue.reserve(name, default_timeout=60)
                if result.jobs:
                    break
            else:
                result = queue.wait_and_reserve([first, other], 1.0, default_timeout=60) \
                    or result
            for job in result.jobs:
                seen.append(time.perf_counter() - pushed[job.id])
                queue.ack(job.queue, job.id)

    thread = threading.Thread(target=worker)
    thread.start()
    for i in range(rounds):
        time.sleep(0.13)  # the worker is idle again, somewhere in its wait
        pushed[f"w{i}"] = time.perf_counter()
        producer.push(target, f"w{i}", '{"v":1,"timeout":60}')
    time.sleep(1.2)
    done.set()
    thread.join()
    return seen


def spread(url: str) -> tuple[str, str]:
    client = connect(url)
    nodes: dict[str, str] = {}
    n = 0
    while len(nodes) < 2:
        nodes.setdefault(client.get_node_from_key(QueueKeys(f"q{n}").ready).name, f"q{n}")
        n += 1
    return tuple(nodes.values())  # type: ignore[return-value]


def show(label: str, values: list[float]) -> None:
    values = sorted(values)
    print(f"  {label}: p50 {statistics.median(values) * 1000:.1f} ms, "
          f"p99 {values[int(len(values) * 0.99) - 1] * 1000:.1f} ms ({len(values)} jobs)")


def main(jobs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sq-bench-") as tmp:
        plain = RedisServer(data_dir=Path(tmp) / "plain", port=free_ports(1)[0])
        (Path(tmp) / "plain").mkdir()
        cluster = LocalCluster(Path(tmp))
        plain.start()
        cluster.start()
        try:
            plain_url = f"redis://127.0.0.1:{plain.port}/0"
            print(f"no-op drain, {jobs} jobs, one process (hot path only):")
            print(f"  plain URL:   {drain(plain_url, jobs):,.0f} jobs/s")
            print(f"  cluster URL: {drain(cluster.url, jobs):,.0f} jobs/s")
            first, other = spread(cluster.url)
            print("idle worker on 2 queues on 2 nodes, push -> reserve:")
            show("job in the first queue", wake_latency(cluster.url, first, other, first, 40))
            show("job in the other queue", wake_latency(cluster.url, first, other, other, 40))
        finally:
            cluster.stop()
            plain.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
