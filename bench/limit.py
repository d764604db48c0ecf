"""The limit: what one Python process (redis-py + hiredis) reaches against the same
server, so every drain rate can be read as a fraction of what the machine allows.

    .venv/bin/python bench/limit.py [--jobs 20000]

- ping: a plain PING loop, one round trip each.
- cycle x2: the smallest reliable cycle, reserve then ack, two round trips per job:
  LMOVE ready -> processing, then LREM processing.
- cycle x1: the same with the ack of one job pipelined with the reserve of the next,
  one round trip per job.
- sq reserve: supervisor-q's own RESERVE script (ack of the previous job + reserve of
  the next, one round trip), called in a loop with no job run: the worker's ceiling.
- sq reserve x16: the same reserving 16 jobs per call (and acking the previous 16).
- sq reserve x16, run: the same, each job parsed, its alarm set and its function called
  (throughput.py --targets' floor of prefetch 16).

throughput.py --targets also runs sleep_loop(): the floor of the 10 ms workload, a bare
fetch-ahead loop in 8 processes (the next job's LMOVE and the last one's LREM sent before
each time.sleep(0.01), their replies read after it), against which the worker's 10 ms
figure can be read.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from supervisor_q.queue.backend import RedisQueue, connect  # noqa: E402


def _fill_ids(client: redis.Redis, key: str, n: int) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(0, n, 1000):
        pipe.rpush(key, *(str(j) for j in range(i, min(n, i + 1000))))
    pipe.execute()


def ping(client: redis.Redis, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        client.ping()
    return n / (time.perf_counter() - t)


def cycle_two(client: redis.Redis, n: int) -> float:
    client.delete("lim:ready", "lim:proc")
    _fill_ids(client, "lim:ready", n)
    t = time.perf_counter()
    while True:
        job = client.lmove("lim:ready", "lim:proc", "LEFT", "RIGHT")
        if job is None:
            break
        client.lrem("lim:proc", 1, job)
    return n / (time.perf_counter() - t)


def cycle_one(client: redis.Redis, n: int) -> float:
    client.delete("lim:ready", "lim:proc")
    _fill_ids(client, "lim:ready", n)
    pipe = client.pipeline(transaction=False)
    prev = None
    t = time.perf_counter()
    while True:
        if prev is not None:
            pipe.lrem("lim:proc", 1, prev)
        pipe.lmove("lim:ready", "lim:proc", "LEFT", "RIGHT")
        prev = pipe.execute()[-1]
        if prev is None:
            break
    return n / (time.perf_counter() - t)


def sq_reserve(url: str, n: int, count: int = 1, run: bool = False) -> float:
    """supervisor-q's RESERVE in a loop over n queued no-op payloads. With run, each job
    is run as the least any Python worker with a hard per-job timeout would: its payload
    parsed (json.loads), its function looked up and called, an interval timer set before
    it (the alarm); no log line, no context, no signature check: the floor of `work
    --prefetch 16 --quiet`."""
    import signal

    from bench.sq_jobs import noop
    from supervisor_q.queue import payload as payloads

    functions = {"bench.sq_jobs:noop": noop}
    queue = RedisQueue(connect(url))
    pipe = queue.client.pipeline(transaction=False)
    scratch = RedisQueue(pipe)  # the same scripts, pipelined: a fast fill
    for i in range(n):
        built = payloads.build("bench.sq_jobs:noop", "limit", [], {})
        scratch.push("limit", built.id, payloads.encode(built))
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    acks: list[str] = []
    done = 0
    t = time.perf_counter()
    while True:
        _, result = queue.reserve("limit", default_timeout=60, ack_ids=acks, count=count)
        if not result.jobs:
            break
        if run:
            for job in result.jobs:
                body = json.loads(job.payload)
                signal.setitimer(signal.ITIMER_REAL, 60)
                functions[body["job"]](*body.get("args", ()), **body.get("kwargs", {}))
        done += len(result.jobs)
        acks = [j.id for j in result.jobs]
    rate = done / (time.perf_counter() - t)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)
    queue.clear("limit")
    return rate


def _sleep_worker(url: str) -> None:
    client = redis.Redis.from_url(url)
    conn = client.connection_pool.get_connection("LMOVE")
    conn.send_command("BLMOVE", "lim:sleep", "lim:slept", "LEFT", "RIGHT", 30)
    current, previous = conn.read_response(), None
    while current is not None:
        calls = [("LMOVE", "lim:sleep", "lim:slept", "LEFT", "RIGHT")]
        if previous is not None:
            calls.insert(0, ("LREM", "lim:slept", 1, previous))
        conn.send_packed_command(conn.pack_commands(calls))
        json.loads(current)
        time.sleep(0.01)
        replies = [conn.read_response() for _ in calls]
        previous, current = current, replies[-1]
    ended = time.time()
    conn.send_command("RPUSH", "lim:ends", repr(ended))
    conn.read_response()
    client.connection_pool.release(conn)
    client.close()


def sleep_loop(url: str, jobs: int = 2000, procs: int = 8) -> float:
    """Jobs/s of 10 ms jobs drained by procs bare fetch-ahead loops (started and waiting
    first, as drain_warm's workers are), from the push of the jobs to the last one's end."""
    client = connect(url)
    client.delete("lim:sleep", "lim:slept", "lim:ends")
    workers = [multiprocessing.get_context("fork").Process(target=_sleep_worker, args=(url,))
               for _ in range(procs)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 30
    while len([c for c in client.client_list() if c.get("cmd") == "blmove"]) < procs:
        if time.monotonic() > deadline:
            raise TimeoutError("sleep_loop: the loops never started waiting")
        time.sleep(0.01)
    started = time.time()
    client.rpush("lim:sleep", *(json.dumps({"job": "sleep10", "n": i}) for i in range(jobs)))
    for w in workers:
        w.join(60)
    ends = [float(v) for v in client.lrange("lim:ends", 0, -1)]
    client.delete("lim:sleep", "lim:slept", "lim:ends")
    client.close()
    if len(ends) < procs:
        raise RuntimeError("sleep_loop: a loop did not finish")
    return jobs / (max(ends) - started)


def idle_round_trip(url: str, n: int = 200, gap: float = 0.01) -> float:
    """Median ms of one PING sent after gap seconds of quiet: what a round trip costs
    once the CPUs have gone idle (the latency and 10 ms workloads pay this, not the
    tight-loop figure)."""
    client = connect(url)
    times = []
    for _ in range(n):
        time.sleep(gap)
        t = time.perf_counter()
        client.ping()
        times.append(time.perf_counter() - t)
    client.close()
    return sorted(times)[len(times) // 2] * 1000


def measure(url: str, n: int) -> dict[str, float]:
    client = connect(url)
    client.ping()
    out = {"ping": ping(client, n), "cycle x2": cycle_two(client, n),
           "cycle x1": cycle_one(client, n)}
    try:
        out["sq reserve"] = sq_reserve(url, n)
        out["sq reserve x16"] = sq_reserve(url, n, 16)
        out["sq reserve x16, run"] = sq_reserve(url, n, 16, run=True)
    except Exception as exc:  # the queue API may be mid-change; the raw limits still count
        print(f"limit: supervisor-q reserve loop skipped: {exc!r}", file=sys.stderr)
    client.delete("lim:ready", "lim:proc")
    client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--redis-url", default=None, help="else a private server")
    args = parser.parse_args()
    server = tmp = None
    url = args.redis_url
    if url is None:
        from bench.common import start_server
        server, tmp = start_server()
        url = server.url
    try:
        for name, rate in measure(url, args.jobs).items():
            print(f"{name:>16}: {rate:8,.0f} /s")
        print(f"PING after 10 ms idle: {idle_round_trip(url):.3f} ms (median)")
    finally:
        if server is not None:
            server.stop()
            tmp.cleanup()


if __name__ == "__main__":
    main()
