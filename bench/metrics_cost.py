"""The cost of metrics: the no-op drain under a master with metrics off and on, in the
same run, rounds alternating (off, on, on, off, ...), then the median ratio on / off.

    .venv/bin/python bench/metrics_cost.py [--jobs 20000] [--procs 2] [--rounds 6]

Off: `metrics: {enabled: false}` in supervisor-q.yaml (no counting, no flush, no
endpoint). On: `metrics: {bind: 127.0.0.1:PORT}`: every report counted, the buckets
flushed to Redis every 5 s, /metrics served and scraped once a second by this script
during the drain.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SYSTEMS, System, drain, free_port, start_server  # noqa: E402


@dataclass(frozen=True)
class MeteredMaster(System):
    """sq-master with a supervisor-q.yaml of its own."""

    settings: str = ""

    def commands(self, url: str, procs: int, conf_dir: Path) -> list[list[str]]:
        found = super().commands(url, procs, conf_dir)
        (conf_dir / "conf.d" / "supervisor-q.yaml").write_text(self.settings)
        return found


def scraper(port: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                r.read()
        except OSError:
            pass  # the master is not up yet, or gone


def one_round(on: bool, url: str, args: argparse.Namespace, logs: Path) -> float:
    base = SYSTEMS["sq-master"]
    port = free_port()
    settings = (f"metrics: {{bind: '127.0.0.1:{port}'}}\n" if on
                else "metrics: {enabled: false}\n")
    system = MeteredMaster(base.name, base.label, base.python, base.has_master, base.flags,
                           settings)
    stop = threading.Event()
    thread = threading.Thread(target=scraper, args=(port, stop), daemon=True)
    if on:
        thread.start()
    try:
        return drain(system, url, "noop", args.jobs, args.procs, logs)["drain_rate"]
    finally:
        stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6, help="of each, alternating")
    args = parser.parse_args()
    server, tmp = start_server()
    rates: dict[bool, list[float]] = {False: [], True: []}
    try:
        with tempfile.TemporaryDirectory(prefix="sq-bench-logs-") as logs:
            for i in range(args.rounds * 2):
                on = (i % 4) in (1, 2)  # off, on, on, off, off, on, on, off...
                rate = one_round(on, server.url, args, Path(logs))
                rates[on].append(rate)
                print(f"round {i + 1}: metrics {'on ' if on else 'off'} {rate:,.0f} jobs/s",
                      flush=True)
    finally:
        server.stop()
        tmp.cleanup()
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"{args.jobs} no-op jobs, {args.procs} worker processes under the master, "
          f"{args.rounds} rounds each: metrics off {off:,.0f} jobs/s, on {on:,.0f} jobs/s "
          f"(median); on/off = {on / off:.3f}")


if __name__ == "__main__":
    main()
