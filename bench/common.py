"""The benchmark harness shared by bench/run.py and bench/throughput.py: the private
server, each system's worker command, starting and stopping pools, and timing a drain.

Runs in the project's environment (it imports supervisor_q for RedisServer); the peers'
processes run with bench/.venv-peers/bin/python.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

from supervisor_q.queue.server import RedisServer

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS_VENV = BENCH / ".venv-peers"
PEERS_PY = PEERS_VENV / "bin" / "python"
MAIN_PY = Path(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[RedisServer, tempfile.TemporaryDirectory]:
    """One private, non-persistent server on a free loopback TCP port."""
    tmp = tempfile.TemporaryDirectory(prefix="sq-bench-")
    server = RedisServer(data_dir=Path(tmp.name), port=free_port(), persistent=False)
    server.start()
    return server, tmp


def env_for(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_REDIS_URL"] = url
    env["SUPERVISOR_Q_REDIS_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@dataclass(frozen=True)
class System:
    """One queue runner: how to start N worker processes, and who is the master."""

    name: str
    label: str  # as printed in tables
    python: Path
    has_master: bool  # one parent process forks the workers
    flags: str  # the worker command as documented in the README
    quiet: bool = False  # supervisor-q without its job lines (`--quiet`, `log_jobs: false`)

    def commands(self, url: str, procs: int, conf_dir: Path) -> list[list[str]]:
        py, bin_ = str(self.python), str(self.python.parent)
        n = str(procs)
        sq = [py, "-m", "supervisor_q"]
        if os.environ.get("SQ_BENCH_PATH"):  # try a patched copy: its supervisor_q first
            sq = [py, "-c", "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
                  "runpy.run_module('supervisor_q', run_name='__main__', alter_sys=True)",
                  os.environ["SQ_BENCH_PATH"]]
        if self.name in ("sq", "sq-prefetch"):
            extra = ["--prefetch", "16"] if self.name == "sq-prefetch" else []
            one = [*sq, "--redis-url", url, "work", "--queue", "bench",
                   "--import", "bench.sq_jobs", "--memory", "0", "--sleep", "1", *extra,
                   *(["--quiet"] if self.quiet else [])]
            return [one] * procs
        if self.name == "sq-master":
            (conf_dir / "conf.d").mkdir(exist_ok=True)
            (conf_dir / "conf.d" / "bench.yaml").write_text(
                "queues: [bench]\nimport: [bench.sq_jobs]\n"
                f"numprocs: {procs}\nmemory: 0\nsleep: 1\n"
                + ("log_jobs: false\n" if self.quiet else ""))
            return [[*sq, "--redis-url", url, "--socket",
                     str(conf_dir / "control.sock"), "run", "--config", str(conf_dir / "conf.d")]]
        if self.name == "huey":
            return [[f"{bin_}/huey_consumer", "bench.peers.huey_jobs.huey", "-k", "process",
                     "-w", n, "-q"]]
        if self.name == "celery":
            return [[f"{bin_}/celery", "-A", "bench.peers.celery_jobs", "worker", "-Q", "bench",
                     "-P", "prefork", "-c", n, "--without-gossip", "--without-mingle",
                     "--without-heartbeat", "-l", "warning"]]
        if self.name == "dramatiq":
            return [[f"{bin_}/dramatiq", "bench.peers.dramatiq_jobs", "-p", n, "-t", "1",
                     "-Q", "bench"]]
        if self.name in ("rq", "rq-simple"):
            extra = ["-w", "rq.worker.SimpleWorker"] if self.name == "rq-simple" else []
            return [[f"{bin_}/rq", "worker", "bench", "--url", url, "-q", *extra]] * procs
        if self.name == "arq":
            return [[f"{bin_}/arq", "bench.peers.arq_jobs.WorkerSettings"]] * procs
        raise ValueError(self.name)


SYSTEMS = {s.name: s for s in [
    System("sq", "supervisor-q", MAIN_PY, False,
           "N x `supervisor-q work --queue bench --import bench.sq_jobs --memory 0 --sleep 1`"),
    System("sq-prefetch", "supervisor-q prefetch 16", MAIN_PY, False,
           "the same with `--prefetch 16`"),
    System("sq-master", "supervisor-q (master)", MAIN_PY, True,
           "`supervisor-q run --config DIR`, one program: numprocs N, memory 0, sleep 1"),
    System("huey", "Huey", PEERS_PY, True,
           "`huey_consumer bench.peers.huey_jobs.huey -k process -w N -q` (RedisHuey, "
           "blocking dequeue, results off)"),
    System("celery", "Celery", PEERS_PY, True,
           "`celery -A bench.peers.celery_jobs worker -Q bench -P prefork -c N "
           "--without-gossip --without-mingle --without-heartbeat -l warning` (no result "
           "backend)"),
    System("dramatiq", "Dramatiq", PEERS_PY, True,
           "`dramatiq bench.peers.dramatiq_jobs -p N -t 1 -Q bench`"),
    System("rq", "RQ", PEERS_PY, False, "N x `rq worker bench --url URL -q` (fork per job)"),
    System("rq-simple", "RQ SimpleWorker", PEERS_PY, False,
           "N x `rq worker bench --url URL -q -w rq.worker.SimpleWorker`"),
    System("arq", "arq", PEERS_PY, False,
           "N x `arq bench.peers.arq_jobs.WorkerSettings` (defaults: max_jobs 10, "
           "poll_delay 0.5 s)"),
]}


_LIVE: list[Pool] = []  # stopped at exit, whatever happened


@atexit.register
def _stop_live_pools() -> None:
    for pool in list(_LIVE):
        pool.stop(grace=1.0)


class Pool:
    """N worker processes of one system, each command in its own process group."""

    def __init__(self, system: System, url: str, procs: int, log_dir: Path) -> None:
        _LIVE.append(self)
        self.system = system
        self.conf_dir = Path(tempfile.mkdtemp(prefix="conf-", dir=log_dir))
        self.procs: list[subprocess.Popen] = []
        self.log = open(log_dir / f"{system.name}.log", "ab")  # noqa: SIM115
        for cmd in system.commands(url, procs, self.conf_dir):
            self.procs.append(subprocess.Popen(
                cmd, cwd=ROOT, env=env_for(url), stdin=subprocess.DEVNULL, stdout=self.log,
                stderr=subprocess.STDOUT, start_new_session=True))

    def check(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{self.system.name}: worker exited with {p.returncode}; "
                                   f"see {self.log.name}")

    def processes(self) -> tuple[list[psutil.Process], list[psutil.Process]]:
        """(masters, workers) as psutil processes."""
        roots = [psutil.Process(p.pid) for p in self.procs]
        workers = [c for r in roots for c in r.children(recursive=True)]
        if not self.system.has_master and not workers:
            return [], roots
        # A master's children; or `supervisor-q work`, a guard process over its worker.
        return roots, workers

    def wait_idle(self, least: float = 1.0, most: float = 30.0) -> None:
        """Wait until every process of the pool has booted and sits idle (under 10% CPU
        in all for two 0.25 s looks), so timings do not include start-up."""
        started = time.monotonic()
        quiet = 0
        while time.monotonic() - started < most:
            self.check()
            procs = []
            for p in self.procs:
                try:
                    root = psutil.Process(p.pid)
                    procs += [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    pass
            for p in procs:
                try:
                    p.cpu_percent(None)
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.25)
            busy = 0.0
            for p in procs:
                try:
                    busy += p.cpu_percent(None)
                except psutil.NoSuchProcess:
                    pass
            quiet = quiet + 1 if busy < 10 else 0
            if quiet >= 2 and time.monotonic() - started >= least:
                return

    def stop(self, grace: float = 3.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:  # the whole group: a master's children too
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait()
        self.log.close()
        if self in _LIVE:
            _LIVE.remove(self)


def agent(system: System, url: str, *args: str, timeout: float = 600) -> dict:
    """Run bench/agent.py in the system's environment; return its JSON answer."""
    done = subprocess.run([str(system.python), str(BENCH / "agent.py"), system.name, *args],
                          cwd=ROOT, env=env_for(url), capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"agent {system.name} {args}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def wait_marks(client: redis.Redis, ends: int, pool: Pool, timeout: float) -> float:
    """Seconds from the start mark to the last end mark, once all ends are recorded."""
    deadline = time.monotonic() + timeout
    while client.llen("bench:end") < ends:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pool.system.name}: drain not finished in {timeout:.0f} s")
        pool.check()
        time.sleep(0.02)
    start = float(client.lindex("bench:start", 0))
    end = max(float(v) for v in client.lrange("bench:end", 0, -1))
    return end - start


def drain_warm(system: System, url: str, job: str, count: int, procs: int, log_dir: Path,
               timeout: float = 300) -> dict:
    """Start procs workers, wait until they idle, then queue count jobs and time them
    (for jobs slower than the producer: the 10 ms workload)."""
    client = redis.Redis.from_url(url)
    client.flushall()
    pool = Pool(system, url, procs, log_dir)
    try:
        pool.wait_idle()
        agent(system, url, "fill", job, str(count), str(procs))
        seconds = wait_marks(client, procs, pool, timeout)
    finally:
        pool.stop()
        client.flushall()
        client.close()
    return {"count": count, "procs": procs, "drain_s": seconds, "drain_rate": count / seconds}


def drain(system: System, url: str, job: str, count: int, procs: int, log_dir: Path,
          timeout: float = 300) -> dict:
    """Queue count jobs with no worker running, then start procs workers and time them."""
    client = redis.Redis.from_url(url)
    client.flushall()
    filled = agent(system, url, "fill", job, str(count), str(procs))
    pool = Pool(system, url, procs, log_dir)
    unacked = None
    try:
        seconds = wait_marks(client, procs, pool, timeout)
        if system.name.startswith("sq"):
            # Every job must be acked once the drain is over (prefetch defers acks).
            time.sleep(0.5)
            unacked = client.zcard("sq:{bench}:reserved")
    finally:
        pool.stop()
        client.flushall()
        client.close()
    return {"count": count, "procs": procs, "enqueue_rate": count / filled["enqueue_s"],
            "drain_s": seconds, "drain_rate": count / seconds, "unacked": unacked}
