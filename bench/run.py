"""Benchmark supervisor-q against RQ, Celery, Dramatiq, Huey and arq on this machine.

    .venv/bin/python bench/run.py            # full run, 3 rounds, about 15 minutes
    .venv/bin/python bench/run.py --quick    # fewer jobs, 1 round, about 2 minutes

Creates bench/.venv-peers (bench/requirements-peers.txt) on first use, starts one private
valkey/redis-server on a free loopback TCP port, and runs the same workloads against
each system in turn: every round runs supervisor-q first, then each peer (A B C ...),
with the peer order reversed on every other round; the per-round ratio is
supervisor-q's figure of that round over the peer's. Writes bench/results/<date>.md,
.json and .png, and latest.md/.png. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import redis  # noqa: E402

from bench import limit  # noqa: E402
from bench.common import (  # noqa: E402
    BENCH,
    PEERS_PY,
    PEERS_VENV,
    SYSTEMS,
    Pool,
    agent,
    drain,
    drain_warm,
    start_server,
)

RESULTS = BENCH / "results"
MB = 1024 * 1024
PEERS = ["huey", "celery", "dramatiq", "rq-simple", "rq", "arq"]
VARIANTS = ["sq-master", "sq-prefetch"]  # supervisor-q's other modes, once per round
# Jobs per drain: 20,000, fewer for the slow peers so a full run fits in 15 minutes
# (rates are per second; each count still takes several seconds to drain).
DRAIN_JOBS = {"celery": 4000, "dramatiq": 1500, "rq-simple": 1500, "rq": 200, "arq": 1000}
LATENCY_JOBS = {"arq": 30, "rq": 200}  # arq polls every 0.5 s, RQ forks per job
SLEEP_JOBS = {"rq": 600}
LATENCY_PROCS = 2


# -- environment -----------------------------------------------------------------------

def ensure_peers_venv() -> None:
    """bench/.venv-peers with bench/requirements-peers.txt, rebuilt when that file changes."""
    req = BENCH / "requirements-peers.txt"
    stamp = PEERS_VENV / ".requirements.sha256"
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    if PEERS_PY.exists() and stamp.exists() and stamp.read_text() == digest:
        return
    print(f"creating {PEERS_VENV} from {req.name} ...", flush=True)
    if not PEERS_PY.exists():
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv",
                        str(PEERS_VENV)], check=True)
    # An old pip (23.2, as a new venv has here) backtracks celery to a kombu that no
    # longer builds ("use_2to3 is invalid"); a current pip resolves the same file.
    subprocess.run([str(PEERS_PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(PEERS_PY), "-m", "pip", "install", "-q", "-r", str(req)], check=True)
    stamp.write_text(digest)


def machine() -> dict:
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "cpu": _cpu_model(), "memory_gb": round(psutil.virtual_memory().total / 1e9),
            "kernel": platform.release(), "server": _server_version(),
            "load_before": os.getloadavg()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _server_version() -> str:
    from supervisor_q.queue.server import find_server_binary

    out = subprocess.run([find_server_binary(), "--version"], capture_output=True, text=True)
    return " ".join(out.stdout.split()[:3])


def versions() -> dict[str, str]:
    code = ("import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
            "['rq', 'celery', 'kombu', 'dramatiq', 'huey', 'arq', 'redis', 'hiredis']}))")
    out = subprocess.run([str(PEERS_PY), "-c", code], capture_output=True, text=True)
    found = json.loads(out.stdout) if out.returncode == 0 else {}
    from importlib.metadata import version

    found["supervisor-q"] = version("supervisor-q")
    found["redis (supervisor-q env)"] = version("redis")
    return found


# -- workloads ---------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_and_memory(system, url: str, jobs: int, log_dir: Path) -> dict:  # noqa: ANN001
    """Idle pool of LATENCY_PROCS: dispatch jobs one at a time, then measure memory."""
    client = redis.Redis.from_url(url)
    client.flushall()
    pool = Pool(system, url, LATENCY_PROCS, log_dir)
    try:
        # Warm up: every worker process booted and idle, and the pool runs jobs.
        pool.wait_idle()
        agent(system, url, "latency", "5", "0.05")
        time.sleep(0.5)
        pool.check()
        lats = agent(system, url, "latency", str(jobs), "0.005")["latencies"]
        time.sleep(1.0)  # idle again
        masters, workers = pool.processes()
        mem = {"workers": len(workers)}
        for role, procs in (("worker", workers), ("master", masters)):
            if procs:
                infos = [p.memory_full_info() for p in procs]
                mem[f"{role}_rss"] = statistics.mean(i.rss for i in infos) / MB
                mem[f"{role}_uss"] = statistics.mean(i.uss for i in infos) / MB
    finally:
        pool.stop()
        client.flushall()
        client.close()
    ms = [v * 1000 for v in lats]
    return {"lat_p50": percentile(ms, 0.5), "lat_p99": percentile(ms, 0.99),
            "lat_n": len(ms), **mem}


def suite(name: str, url: str, scale: float, log_dir: Path, latency_jobs: int,
          sleep_jobs: int) -> dict:
    """Every workload for one system; returns metric -> value."""
    system = SYSTEMS[name]
    n = max(100, int(DRAIN_JOBS.get(name, 20_000) * scale))
    out: dict = {}
    for procs in (1, 2):
        r = drain(system, url, "noop", n, procs, log_dir)
        out[f"enqueue_{procs}"] = r["enqueue_rate"]
        out[f"drain_{procs}"] = r["drain_rate"]
        if r.get("unacked"):
            out[f"unacked_{procs}"] = r["unacked"]
        out["drain_jobs"] = n
    out.update(latency_and_memory(system, url, LATENCY_JOBS.get(name, latency_jobs), log_dir))
    sleeps = min(SLEEP_JOBS.get(name, sleep_jobs), sleep_jobs)
    r = drain_warm(system, url, "sleep10", sleeps, 8, log_dir)
    out["sleep8"] = r["drain_rate"]
    out["sleep8_pct"] = 100 * r["drain_rate"] / 800
    return out


# -- report --------------------------------------------------------------------------------

def med(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def render(report: dict) -> str:
    m, runs, rounds = report["machine"], report["runs"], report["rounds"]
    when = report["date"]
    lines = [f"# supervisor-q benchmark, {when}", "",
             f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, Linux "
             f"{m['kernel']}, Python {m['python']}, {m['server']} on loopback TCP. "
             f"Load average before the run: {', '.join(f'{x:.2f}' for x in m['load_before'])};"
             f" after: {', '.join(f'{x:.2f}' for x in report['load_after'])}. "
             f"{rounds} round(s){' (--quick)' if report['quick'] else ''}; medians of the "
             "rounds.", "",
             "| system | enqueue jobs/s | drain, 1 proc | drain, 2 procs | latency p50 ms | "
             "p99 ms | 10 ms jobs, 8 procs | worker USS / RSS MB | master USS / RSS MB |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for name, rs in runs.items():
        s = SYSTEMS[name]
        sleep = med(rs, "sleep8")
        bad = " (jobs left unacked!)" if any(r.get("unacked_1") or r.get("unacked_2")
                                             for r in rs) else ""
        lines.append(
            f"| {s.label}{bad} | {fmt(med(rs, 'enqueue_1'))} | {fmt(med(rs, 'drain_1'))} | "
            f"{fmt(med(rs, 'drain_2'))} | {fmt(med(rs, 'lat_p50'), 2)} | "
            f"{fmt(med(rs, 'lat_p99'), 2)} | {fmt(sleep)} ({fmt(med(rs, 'sleep8_pct'))}%) | "
            f"{fmt(med(rs, 'worker_uss'), 1)} / {fmt(med(rs, 'worker_rss'), 1)} | "
            f"{fmt(med(rs, 'master_uss'), 1)} / {fmt(med(rs, 'master_rss'), 1)} |")
    lines += ["", "Drains: no-op jobs queued first (enqueue = one standard call per job, one "
              "Python process), then the workers start; timed from the first job's start to "
              "the last job's end. Jobs per drain: " + ", ".join(
                  f"{SYSTEMS[n].label} {rs[0]['drain_jobs']:,}" for n, rs in runs.items())
              + ". Latency: dispatch -> start inside the job, "
              f"{LATENCY_PROCS} idle worker processes, jobs one at a time. 10 ms jobs: "
              "time.sleep(0.01), 8 worker processes, ideal 800 jobs/s. Memory: idle workers "
              "after the latency run (psutil memory_full_info; for masters that fork, every child "
              "counts as a worker, e.g. Huey's scheduler process). Latency and 10 ms runs start "
              "once every worker process has booted and sits idle."]
    lines += ["", "## supervisor-q / peer, per round", "",
              "Throughput: above 1 means supervisor-q is faster. Latency: below 1 means "
              "supervisor-q starts jobs sooner.", "",
              "| peer | round | drain 1 proc | drain 2 procs | p50 | p99 | 10 ms jobs |",
              "|---|--:|--:|--:|--:|--:|--:|"]
    for peer in report["peers"]:
        for i, (sq, pr) in enumerate(zip(runs.get("sq", []), runs.get(peer, []), strict=False)):
            cells = [_ratio(sq, pr, k) for k in ("drain_1", "drain_2", "lat_p50", "lat_p99",
                                                 "sleep8")]
            lines.append(f"| {SYSTEMS[peer].label} | {i + 1} | " + " | ".join(cells) + " |")
    lim = report["limit"]
    if lim:
        lines += ["", "## The limit: one Python process, redis-py + hiredis, same server", "",
                  "| loop | per second | supervisor-q 1-proc drain as a fraction |",
                  "|---|--:|--:|"]
        sq1 = med(runs.get("sq", []), "drain_1")
        for name, rate in lim.items():
            frac = f"{100 * sq1 / rate:.0f}%" if sq1 else "–"
            lines.append(f"| {name} | {fmt(rate)} | {frac} |")
        lines += ["", "ping: PING loop. cycle x2: LMOVE ready->processing, then LREM (two "
                  "round trips per job). cycle x1: the ack pipelined with the next reserve "
                  "(one). sq reserve: supervisor-q's RESERVE script in a loop, no job run "
                  "(the worker's ceiling); x16 reserves 16 and acks 16 per call. A PING sent after "
                  "10 ms of "
                  "quiet "
                  f"takes {report['idle_rtt_ms']:.2f} ms (median) on this machine: the price of "
                  "each round trip in the latency and 10 ms workloads."]
    lines += ["", "## Targets, this run", ""] + targets(runs)
    lines += ["", "## Worker commands", ""]
    lines += [f"- {SYSTEMS[n].label}: {SYSTEMS[n].flags}" for n in runs]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items())]
    return "\n".join(lines) + "\n"


def _ratio(sq: dict, peer: dict, key: str) -> str:
    a, b = sq.get(key), peer.get(key)
    return f"{a / b:.2f}" if a and b else "–"


def targets(runs: dict) -> list[str]:
    sq = runs.get("sq", [])
    huey = runs.get("huey", [])
    rows = []

    def row(text: str, value: float | None, ok: bool | None, unit: str = "") -> None:
        mark = "–" if ok is None else ("met" if ok else "NOT met")
        rows.append(f"- {text}: {fmt(value, 2 if unit == ' ms' else 1 if unit else 0)}"
                    f"{unit} ({mark})")

    d1, d2 = med(sq, "drain_1"), med(sq, "drain_2")
    row("no-op drain, 1 worker process >= 4,000 jobs/s", d1, d1 and d1 >= 4000)
    ratios = [a["drain_1"] / b["drain_1"] for a, b in zip(sq, huey, strict=False)]
    r = statistics.median(ratios) if ratios else None
    row("  ... and >= 1.75x Huey (median of per-round ratios)", r, None if r is None else r >= 1.75,
        "x")
    row("no-op drain, 2 worker processes >= 6,000 jobs/s", d2, d2 and d2 >= 6000)
    p50, p99 = med(sq, "lat_p50"), med(sq, "lat_p99")
    row("latency p50 <= 1 ms", p50, p50 is not None and p50 <= 1, " ms")
    row("latency p99 <= 3 ms", p99, p99 is not None and p99 <= 3, " ms")
    pct = med(sq, "sleep8_pct")
    row("10 ms jobs, 8 workers >= 95% of 800/s", pct, pct is not None and pct >= 95, "%")
    uss = med(sq, "worker_uss")
    row("idle worker USS <= 12 MB (`work` processes)", uss, uss is not None and uss <= 12,
        " MB")
    muss = med(runs.get("sq-master", []), "worker_uss")
    if muss is not None:
        row("idle worker USS <= 12 MB (children of the master)", muss, muss <= 12, " MB")
    pf = med(runs.get("sq-prefetch", []), "drain_1")
    if pf is not None:
        row("stretch: prefetch, >= 10,000 no-op jobs/s per worker process", pf, pf >= 10000)
    return rows


def chart(json_path: Path, png: Path) -> None:
    done = subprocess.run([str(PEERS_PY), str(BENCH / "chart.py"), str(json_path), str(png)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"chart failed: {done.stderr[-1000:]}", file=sys.stderr)


def update_readme(path: Path, table: str, png_rel: str) -> None:
    """Replace the text between the bench markers of a README (or its
    BENCHMARKS_PLACEHOLDER line), if it has them."""
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    text = path.read_text() if path.exists() else ""
    text = text.replace("BENCHMARKS_PLACEHOLDER", f"{start}\n{end}", 1)
    if start not in text or end not in text:
        print(f"{path}: no {start} ... {end} markers; not updated", file=sys.stderr)
        return
    body = table.split("\n", 2)[2]  # drop the H1 line
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n![drain throughput and latency]({png_rel})\n\n{body}"
                    f"{end}{tail}")


# -- main ------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description="supervisor-q vs peers, same machine")
    parser.add_argument("--quick", action="store_true", help="fewer jobs, 1 round (~2 min)")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma list, or ''")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="supervisor-q modes besides `work`: sq-master, sq-prefetch")
    parser.add_argument("--sq-path", default=None,
                        help="import supervisor_q from this directory instead (try a patch)")
    parser.add_argument("--readme", type=Path, action="append", default=[],
                        help="also update the bench section of this README (markers)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    scale = 0.2 if args.quick else 1.0
    latency_jobs = 100 if args.quick else 500
    sleep_jobs = 400 if args.quick else 1600
    peers = [p for p in args.peers.split(",") if p]
    variants = [v for v in args.variants.split(",") if v]
    arbiter = BENCH.parent / "supervisor_q" / "master" / "arbiter.py"
    if "sq-master" in variants and not arbiter.exists():
        variants.remove("sq-master")
    if args.sq_path:
        os.environ["SQ_BENCH_PATH"] = str(Path(args.sq_path).resolve())
    if peers:
        ensure_peers_venv()
    RESULTS.mkdir(exist_ok=True)
    info = machine()
    print(f"machine: {info['cores']} cores, Python {info['python']}, load "
          f"{info['load_before']}", flush=True)
    server, tmp = start_server()
    log_dir = Path(tempfile.mkdtemp(prefix="sq-bench-logs-"))
    runs: dict[str, list[dict]] = {"sq": []}
    runs.update({p: [] for p in peers})
    runs.update({v: [] for v in variants})
    started = time.monotonic()
    try:
        lim = limit.measure(server.url, int(20_000 * scale))
        idle_rtt = limit.idle_round_trip(server.url)
        print("limit: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in lim.items()), flush=True)
        for rnd in range(rounds):
            order = peers if rnd % 2 == 0 else list(reversed(peers))
            for name in ["sq", *order, *variants]:
                t = time.monotonic()
                try:
                    r = suite(name, server.url, scale, log_dir, latency_jobs, sleep_jobs)
                except Exception as exc:  # one broken system must not lose the others
                    print(f"round {rnd + 1} {name}: FAILED: {exc}", flush=True)
                    r = {"error": str(exc), "drain_jobs": 0}
                runs[name].append(r)
                print(f"round {rnd + 1} {name:12} {time.monotonic() - t:5.0f} s  " + "  ".join(
                    f"{k}={v:,.1f}" for k, v in r.items() if isinstance(v, float)), flush=True)
    finally:
        server.stop()
        tmp.cleanup()
    stamp = dt.datetime.now().strftime("%Y-%m-%d")
    report = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": info,
              "load_after": os.getloadavg(), "quick": args.quick, "rounds": rounds,
              "peers": peers, "runs": runs, "limit": lim, "idle_rtt_ms": idle_rtt,
              "versions": versions(),
              "seconds": time.monotonic() - started, "logs": str(log_dir)}
    name = f"{stamp}-quick" if args.quick else stamp
    json_path = RESULTS / f"{name}.json"
    json_path.write_text(json.dumps(report, indent=1))
    table = render(report)
    (RESULTS / f"{name}.md").write_text(table)
    chart(json_path, RESULTS / f"{name}.png")
    if not args.quick:
        shutil.copy(RESULTS / f"{name}.md", RESULTS / "latest.md")
        if (RESULTS / f"{name}.png").exists():
            shutil.copy(RESULTS / f"{name}.png", RESULTS / "latest.png")
        for readme in args.readme:
            rel = os.path.relpath(RESULTS / "latest.png", readme.resolve().parent)
            update_readme(readme, table, rel)
    print()
    print(table)
    print(f"written: {RESULTS / name}.md/.json/.png ({report['seconds']:.0f} s; "
          f"worker logs in {log_dir})")


if __name__ == "__main__":
    main()
