"""The producer side of one benchmark step, run in the environment of the system under
test (bench/.venv-peers for the peers, the project's for supervisor-q).

    python bench/agent.py SYSTEM fill JOB COUNT WORKERS   -> {"enqueue_s": ...}
    python bench/agent.py SYSTEM latency COUNT            -> {"latencies": [...]}

fill queues mark("bench:start"), COUNT x JOB, then WORKERS x mark("bench:end"), each
group a few ms apart (arq orders by enqueue time in ms), and times only the COUNT jobs,
one standard enqueue call each. latency dispatches lat(time.time()) one at a time into
idle workers and waits for each job to record its start before the next.
"""

from __future__ import annotations

import importlib
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import marks  # noqa: E402

MODULES = {"sq": "bench.sq_jobs", "huey": "bench.peers.huey_jobs",
           "celery": "bench.peers.celery_jobs", "dramatiq": "bench.peers.dramatiq_jobs",
           "rq": "bench.peers.rq_jobs", "arq": "bench.peers.arq_jobs"}


def fill(client, job: str, count: int, workers: int) -> dict:  # noqa: ANN001
    client.enqueue("mark", "bench:start")
    time.sleep(0.005)
    started = time.perf_counter()
    many = getattr(client, "enqueue_many", None)
    if many is not None:
        many(job, count)
    else:
        for _ in range(count):
            client.enqueue(job)
    elapsed = time.perf_counter() - started
    time.sleep(0.005)
    for _ in range(workers):
        client.enqueue("mark", "bench:end")
    return {"enqueue_s": elapsed, "count": count}


def latency(client, count: int, gap: float) -> dict:  # noqa: ANN001
    r = marks.client()
    out = []
    for _ in range(count):
        client.enqueue("lat", time.time())
        got = r.blpop(["bench:lat"], timeout=30)
        if got is None:
            raise SystemExit("latency: a job did not start within 30 s")
        out.append(float(got[1]))
        time.sleep(gap * (0.5 + random.random()))  # let the workers go idle again
    return {"latencies": out}


def main(argv: list[str]) -> None:
    system, action, *rest = argv
    client = importlib.import_module(MODULES[system.split("-")[0]]).Client()
    if action == "fill":
        result = fill(client, rest[0], int(rest[1]), int(rest[2]))
    elif action == "latency":
        result = latency(client, int(rest[0]), float(rest[1]) if len(rest) > 1 else 0.01)
    else:
        raise SystemExit(f"unknown action {action}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
