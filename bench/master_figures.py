"""Figures for the master (issues 3 and 4): spawn latency, memory per child, idle CPU,
kill-to-replacement, timeout lateness, restart-workers timing, status latency at scale.

    .venv/bin/python bench/master_figures.py [--quick]

Prints a markdown table and writes it to bench/results/master-<date>.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])

import bench.master_jobs  # noqa: E402,F401  (registers the jobs dispatched by name)
from supervisor_q.config.schema import WorkerProgram  # noqa: E402
from supervisor_q.jobs.registry import dispatch  # noqa: E402
from supervisor_q.master.process import ChildProcess  # noqa: E402
from supervisor_q.master.spawn import ForkSpawner  # noqa: E402
from supervisor_q.queue.backend import RedisQueue, connect  # noqa: E402
from supervisor_q.queue.restart import signal_restart  # noqa: E402
from supervisor_q.queue.server import RedisServer  # noqa: E402
from tests.helpers import wait_until  # noqa: E402
from tests.masters import Master  # noqa: E402

PROGRAM = "queues: [{q}]\nimport: [bench.master_jobs]\nnumprocs: {n}\nstartsecs: 0\nmemory: 0\n"


def spawn_latency(url: str, rounds: int) -> float:
    """Fork -> the child's ready report (modules imported, Redis connected), median ms."""
    program = WorkerProgram.model_validate(
        {"name": "spawn", "queues": ["spawn"], "import": ["bench.master_jobs"]})
    spawner = ForkSpawner(url)
    samples = []
    for slot in range(rounds):
        start = time.perf_counter()
        spawned = spawner.spawn(program, ChildProcess("spawn", slot), False)
        os.set_blocking(spawned.report_fd, True)
        os.read(spawned.report_fd, 64)
        samples.append((time.perf_counter() - start) * 1000)
        os.kill(spawned.pid, signal.SIGKILL)
        os.waitpid(spawned.pid, 0)
        os.close(spawned.report_fd)
    return statistics.median(samples)


def memory_per_child(master: Master, name: str) -> tuple[float, float, float]:
    rss, uss = [], []
    for pid in master.pids(name):
        info = psutil.Process(pid).memory_full_info()
        rss.append(info.rss / 2**20)
        uss.append(info.uss / 2**20)
    master_rss = psutil.Process(master.proc.pid).memory_full_info().rss / 2**20
    return statistics.median(rss), statistics.median(uss), master_rss


def master_idle_cpu(master: Master, seconds: float) -> float:
    proc = psutil.Process(master.proc.pid)
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return 100.0 * used / seconds


def kill_to_replacement(master: Master, client: redis.Redis, rounds: int) -> float:
    """SIGKILL the only child, dispatch at once: ms until the job has started elsewhere."""
    samples = []
    for _ in range(rounds):
        [pid] = master.wait_running("one", 1)
        client.delete("bench:started")
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        dispatch("bench.started", queue="one")
        wait_until(lambda: client.llen("bench:started"), timeout=20, interval=0.002)
        samples.append((float(client.lindex("bench:started", 0)) - killed_at) * 1000)
        wait_until(lambda p=pid: p not in master.pids("one"), timeout=20)
    return statistics.median(samples)


def timeout_lateness(master: Master, queue: RedisQueue, client: redis.Redis,
                     rounds: int) -> float:
    """A job stuck in C with SIGALRM blocked, timeout 1 s: seconds past the timeout."""
    samples = []
    for _ in range(rounds):
        master.wait_running("one", 1)
        client.delete("bench:stuck")
        queue.flush_failed()
        dispatch("bench.stuck_in_c", queue="one")
        wait_until(lambda: queue.failed_records(["one"]), timeout=20)
        started = float(client.lindex("bench:stuck", 0))
        samples.append(queue.failed_records(["one"])[0]["failed_at"] - started - 1.0)
    return statistics.median(samples)


def restart_time(master: Master, client: redis.Redis, name: str, busy: bool) -> float:
    before = set(master.wait_running(name, 8))
    if busy:
        for _ in range(16):
            dispatch("bench.sleep", 0.5, queue=name)
        wait_until(lambda: all(p["job"] for p in master.program(name)["processes"]),
                   timeout=10, interval=0.005)
    start = time.perf_counter()
    signal_restart(client)
    wait_until(lambda: len(master.pids(name)) == 8 and not set(master.pids(name)) & before,
               timeout=60, interval=0.01)
    return time.perf_counter() - start


def throughput_around_restart(master: Master, client: redis.Redis, name: str) -> tuple:
    """10 ms jobs on 8 children: jobs/s in the 2 s before the signal and the 2 s after."""
    master.wait_running(name, 8)
    client.delete("bench:done")
    for _ in range(8000):  # enough for the whole measurement: about 10 s of work
        dispatch("bench.sleep", 0.01, queue=name)
    n0 = client.llen("bench:done")
    time.sleep(2.0)
    before = (client.llen("bench:done") - n0) / 2.0
    n1 = client.llen("bench:done")
    signal_restart(client)
    time.sleep(2.0)
    during = (client.llen("bench:done") - n1) / 2.0
    return before, during


def status_latency(master: Master, sizes: list[int]) -> list[tuple[int, float]]:
    out = []
    for size in sizes:
        master.call("scale", program="many", numprocs=size)
        master.wait_running("many", size, timeout=240)
        samples = []
        for _ in range(20):
            start = time.perf_counter()
            master.status()
            samples.append((time.perf_counter() - start) * 1000)
        out.append((size, statistics.median(samples)))
        if statistics.median(samples) > 100:
            break
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="sqb-", dir="/tmp") as tmp_name:
        tmp = Path(tmp_name)
        server = RedisServer(data_dir=tmp / "redis", persistent=False)
        server.start()
        url = server.url
        os.environ["SUPERVISOR_Q_REDIS_URL"] = url
        client = redis.Redis.from_url(url)
        queue = RedisQueue(connect(url))
        try:
            ms = spawn_latency(url, 5 if args.quick else 20)
            rows.append(("spawn latency (fork -> ready for a job)", f"{ms:.1f} ms",
                         "ForkSpawner, median"))
            (tmp / "m").mkdir()
            master = Master(tmp / "m", url, {"idle": PROGRAM.format(q="idle", n=10),
                                             "one": PROGRAM.format(q="one", n=1),
                                             "roll": PROGRAM.format(q="roll", n=8)})
            master.start()
            try:
                master.wait_running("idle", 10)
                rss, uss, mrss = memory_per_child(master, "idle")
                rows.append(("idle child RSS / USS", f"{rss:.1f} / {uss:.1f} MB",
                             "median of 10 idle children"))
                rows.append(("master RSS", f"{mrss:.1f} MB", "with 19 children"))
                ms = kill_to_replacement(master, client, 3 if args.quick else 10)
                rows.append(("SIGKILL of a child -> its replacement starts a job",
                             f"{ms:.0f} ms", "median"))
                late = timeout_lateness(master, queue, client, 1 if args.quick else 3)
                rows.append(("timeout enforcement lateness (job stuck in C, timeout 1 s)",
                             f"{late:.2f} s", "failed_at - start - timeout, median"))
                idle = restart_time(master, client, "roll", busy=False)
                rows.append(("restart-workers -> last of 8 idle children replaced",
                             f"{idle:.2f} s", ""))
                busy = restart_time(master, client, "roll", busy=True)
                rows.append(("restart-workers -> last of 8 busy children replaced",
                             f"{busy:.2f} s", "children busy with 0.5 s jobs"))
                before, during = throughput_around_restart(master, client, "roll")
                rows.append(("10 ms jobs/s on 8 children: before / during restart",
                             f"{before:.0f} / {during:.0f}", "2 s windows"))
                master.write("many", PROGRAM.format(q="many", n=0))
                master.call("reload")
                master.call("stop", program="idle")
                master.call("stop", program="roll")
                master.call("scale", program="many", numprocs=50)
                master.wait_running("many", 50, timeout=120)
                cpu = master_idle_cpu(master, 10 if args.quick else 60)
                rows.append(("master CPU with 50 idle children", f"{cpu:.2f} %",
                             f"over {10 if args.quick else 60} s"))
                sizes = [50, 100] if args.quick else [50, 100, 200, 300]
                for size, ms in status_latency(master, sizes):
                    rows.append((f"`status` with {size} children", f"{ms:.1f} ms", "median"))
            finally:
                master.stop()
        finally:
            server.stop()
    lines = [f"# supervisor-q master figures, {date.today()} ({os.cpu_count()} cores, "
             f"Python {sys.version.split()[0]})", "", "| figure | value | note |",
             "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"master-{date.today()}.md").write_text(text)


if __name__ == "__main__":
    main()
