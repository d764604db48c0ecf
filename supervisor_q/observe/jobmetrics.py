"""The per-job Prometheus metrics, kept as plain numbers and exposed at scrape time.

prometheus_client's Counter and Histogram take a lock, check the metric is observable
and walk the buckets in Python on every call: with the bucket fields, 15 µs of the
master's time per job of every child, half of what it spent per job. Here a job's
count is a dict increment and its runtime one bisect into a list of bucket counts;
`JobMetrics.collect()` turns them into the same families (`supervisorq_jobs_total`,
`supervisorq_job_duration_seconds`, `supervisorq_job_wait_seconds`, with their
`_created` samples) when Prometheus asks, which prometheus_client supports as a custom
collector. Pure: no I/O, no threads.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# Seconds; Prometheus' defaults, then minutes and an hour for long jobs and long waits.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           300.0, 900.0, 3600.0)
_LE = [floatToGoString(b) for b in BUCKETS] + ["+Inf"]


class Histogram:
    """One label set's observations: a count per bucket (the last is +Inf), their sum."""

    __slots__ = ("counts", "sum", "created")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, the bucket `le` that counts it first
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for le, count in zip(_LE, self.counts, strict=True):
            running += count
            out.append((le, float(running)))
        return out


class JobMetrics(Collector):
    """Outcomes by (queue, job, outcome), runtimes by (queue, job), waits by queue."""

    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, str, str], int] = {}
        self.outcomes_created: dict[tuple[str, str, str], float] = {}
        self.durations: dict[tuple[str, str], Histogram] = {}
        self.waits: dict[str, Histogram] = {}

    def started(self, queue: str, wait: float) -> None:
        histogram = self.waits.get(queue)
        if histogram is None:
            histogram = self.waits[queue] = Histogram()
        histogram.observe(wait)

    def finished(self, queue: str, job: str, outcome: str, runtime: float) -> None:
        key = (queue, job, outcome)
        count = self.outcomes.get(key)
        if count is None:
            count = 0
            self.outcomes_created[key] = time.time()
        self.outcomes[key] = count + 1
        histogram = self.durations.get((queue, job))
        if histogram is None:
            histogram = self.durations[(queue, job)] = Histogram()
        histogram.observe(runtime)

    def collect(self) -> Iterator[Metric]:
        jobs = CounterMetricFamily("supervisorq_jobs", "Jobs finished, by outcome",
                                   labels=["queue", "job", "outcome"])
        for key, count in self.outcomes.items():
            jobs.add_metric(list(key), count, created=self.outcomes_created[key])
        yield jobs
        yield _histograms("supervisorq_job_duration_seconds", "Job runtime",
                          ["queue", "job"], self.durations)
        yield _histograms("supervisorq_job_wait_seconds",
                          "From ready (dispatch, release, delay over) to reserved",
                          ["queue"], {(queue,): h for queue, h in self.waits.items()})


def _histograms(name: str, documentation: str, labels: list[str],
                histograms: Mapping[tuple[str, ...], Histogram]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, histogram in histograms.items():
        family.add_metric(list(values), histogram.cumulative(), histogram.sum)
        # as prometheus_client's own Histogram: when this label set was first seen
        family.samples.append(Sample(f"{name}_created", dict(zip(labels, values, strict=True)),
                                     histogram.created))
    return family
