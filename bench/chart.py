"""Bar charts of a bench/run.py result: no-op drain throughput (1 and 2 worker
processes) and dispatch->start latency (p50, p99). Runs in bench/.venv-peers, where
matplotlib is installed; never a runtime dependency of supervisor-q.

    bench/.venv-peers/bin/python bench/chart.py results/DATE.json results/DATE.png
"""

from __future__ import annotations

import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"sq": "supervisor-q", "sq-master": "sq (master)", "sq-prefetch": "sq prefetch 16",
          "huey": "Huey", "celery": "Celery", "dramatiq": "Dramatiq", "rq": "RQ (fork)",
          "rq-simple": "RQ Simple", "arq": "arq"}


def med(runs: list[dict], key: str) -> float:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else 0.0


def main(src: str, dst: str) -> None:
    report = json.load(open(src))
    runs = report["runs"]
    names = [n for n in runs if any("drain_1" in r for r in runs[n])]
    labels = [LABELS.get(n, n) for n in names]
    x = range(len(names))
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8))
    w = 0.4
    for off, key, text in ((-w / 2, "drain_1", "1 worker process"),
                           (w / 2, "drain_2", "2 worker processes")):
        values = [med(runs[n], key) for n in names]
        bars = a.bar([i + off for i in x], values, w, label=text)
        a.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7, rotation=90,
                    padding=2)
    a.set_title("No-op drain throughput (jobs/s, higher is better)")
    a.set_yscale("log")
    a.set_ylim(top=max(med(runs[n], "drain_2") for n in names) * 4)
    a.set_xticks(list(x), labels, rotation=30, ha="right")
    a.legend(fontsize=8)
    for off, key, text in ((-w / 2, "lat_p50", "p50"), (w / 2, "lat_p99", "p99")):
        values = [med(runs[n], key) for n in names]
        bars = b.bar([i + off for i in x], values, w, label=text)
        b.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=7, rotation=90,
                    padding=2)
    b.set_title("Dispatch -> start latency, idle workers (ms, lower is better)")
    b.set_yscale("log")
    b.set_ylim(top=max(med(runs[n], "lat_p99") for n in names) * 4)
    b.set_xticks(list(x), labels, rotation=30, ha="right")
    b.legend(fontsize=8)
    m = report["machine"]
    fig.suptitle(f"{report['date']}: {m['cores']} cores, Python {m['python']}, "
                 f"{m['server']}, medians of {report['rounds']} round(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
