"""Dashboard overview response time with 100 queues and 200 processes (issue 12's figure).

Starts a private server (bench/common.start_server), fills it with 100 queues (jobs
ready, delayed and failed in each) and 10 masters' heartbeats of 4 programs x 5
processes (200 processes), serves the real dashboard with uvicorn on a loopback port,
and times over HTTP GET / (full page), GET /part/overview (the part htmx refreshes every
5 s) and the chart data the page fetches (all 100 queues summed, last hour and day;
reused for 5 s / 60 s, so `first` is the uncached read):

    .venv/bin/python bench/dashboard_overview.py [--requests 200] [--queues 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import start_server  # noqa: E402
from supervisor_q.fleet import registry  # noqa: E402
from supervisor_q.queue import payload as payloads  # noqa: E402
from supervisor_q.queue.backend import RedisQueue, connect  # noqa: E402
from supervisor_q.web.app import build_app  # noqa: E402
from supervisor_q.web.security import Guard, bound_socket  # noqa: E402


def fill(queue: RedisQueue, queues: int, masters: int, programs: int, procs: int) -> None:
    for q in range(queues):
        name = f"queue-{q:03d}"
        for i in range(5):
            p = payloads.build("bench:job", name, [i], {})
            queue.push(name, p.id, payloads.encode(p), delay=60 if i == 4 else 0)
        [job] = queue.reserve(name, default_timeout=60)[1].jobs
        queue.fail(name, job.id, {"id": job.id, "job": "bench:job", "queue": name,
                                  "reason": "x", "payload": job.payload})
    for m in range(masters):
        status = {"host": f"host{m}", "pid": 1000 + m, "version": "0", "paused_queues": [],
                  "redis_error": None, "master": {}, "programs": [
                      {"name": f"prog{p}", "kind": "worker", "target": procs,
                       "target_reason": "numprocs", "state": "running", "paused": False,
                       "queues": [f"queue-{p:03d}"], "next_transition": None,
                       "processes": [{"name": f"prog{p}#{c}", "pid": 10000 + c, "slot": c,
                                      "state": "running", "uptime": 50.0, "jobs_done": 7,
                                      "job": {"id": "x", "name": "bench:job",
                                              "queue": "queue-000", "runtime": 1.5},
                                      "rss": 50 << 20} for c in range(procs)]}
                      for p in range(programs)]}
        registry.beat(queue.client, f"host{m}:1:{m:04x}", status, [], 600)


def timed(url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as reply:
            reply.read()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--queues", type=int, default=100)
    args = parser.parse_args()
    server, tmp = start_server()
    try:
        queue = RedisQueue(connect(server.url))
        fill(queue, args.queues, masters=10, programs=4, procs=5)
        sock = bound_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        config = uvicorn.Config(build_app(queue, Guard(None)), log_level="warning")
        web = uvicorn.Server(config)
        threading.Thread(target=web.run, kwargs={"sockets": [sock]}, daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        while not web.started:
            time.sleep(0.05)
        timed(base + "/", 10)  # warm-up
        print(f"dashboard overview, {args.queues} queues, 10 masters x 4 programs x 5 "
              f"processes = 200 processes, {args.requests} sequential requests over HTTP:")
        for path in ("/", "/part/overview", "/api/series?range=hour",
                     "/api/series?range=day"):
            raw = timed(base + path, args.requests)
            t = sorted(raw)
            print(f"  GET {path:<22} median {statistics.median(t):6.1f} ms   "
                  f"p95 {t[int(len(t) * 0.95) - 1]:6.1f} ms   max {t[-1]:6.1f} ms   "
                  f"first {raw[0]:6.1f} ms")
        web.should_exit = True
    finally:
        server.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
