"""Metrics from a real master with real children: /metrics scraped over HTTP, the
per-minute buckets read back from Redis, and a bad supervisor-q.yaml."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.jobs.registry import dispatch
from supervisor_q.observe.buckets import fleet_totals, read_series
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.masters import Master, results

Q = "metrics-q"
WORKER = f"queues: [{Q}]\nimport: [tests.jobmods.basic]\nstartsecs: 0.2\nnumprocs: 1\n"
RECYCLER = "queues: [recycle-q]\nimport: [tests.jobmods.basic]\nstartsecs: 0.2\nmax_jobs: 2\n"
IDLE = "queues: [gauge-q]\nimport: [tests.jobmods.basic]\nnumprocs: 0\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def jobs(samples: dict, job: str, outcome: str) -> float | None:
    return sample(samples, "supervisorq_jobs_total", queue=Q, job=job, outcome=outcome)


EXPECTED = {("tests.noop", "done"): 3, ("tests.boom", "failed"): 1,
            ("tests.fail_now", "failed"): 1, ("tests.release_once", "released"): 1,
            ("tests.release_once", "done"): 1, ("tests.sleep_short_timeout", "timeout"): 1,
            ("tests.exit_hard", "lost"): 1,
            # the master queues the lost job's failure callbacks as a job of its queue
            ("supervisor_q:settle_failed", "done"): 1}


@pytest.mark.slow
def test_outcomes_restarts_and_queues_on_metrics_and_in_redis(tmp_path: Path,
                                                              redis_url: str) -> None:
    port = free_port()
    master = Master(tmp_path, redis_url, {"w": WORKER, "r": RECYCLER, "idle": IDLE})
    master.write("supervisor-q", f"metrics: {{bind: '127.0.0.1:{port}'}}\n")
    queue = RedisQueue(connect(redis_url))
    dispatched_at = time.time()  # waits while the master starts: a wait of a second or so
    dispatch("tests.record", "early", queue="recycle-q")
    with master:
        for _ in range(3):
            dispatch("tests.noop", queue=Q)
        dispatch("tests.boom", queue=Q)
        dispatch("tests.fail_now", queue=Q)
        dispatch("tests.release_once", queue=Q)
        dispatch("tests.sleep_short_timeout", 5, queue=Q)
        dispatch("tests.exit_hard", 7, queue=Q)
        dispatch("tests.noop", queue="gauge-q")
        dispatch("tests.noop", queue="gauge-q")
        dispatch("tests.noop", queue="gauge-q", delay=600)

        def counted() -> dict | None:
            samples = scrape(port)
            got = {key: jobs(samples, *key) for key in EXPECTED}
            return samples if got == EXPECTED else None
        samples = wait_until(counted, timeout=20, message=f"counts; log: {master.tail()}")
        assert sample(samples, "supervisorq_job_duration_seconds_count",
                      queue=Q, job="tests.noop") == 3
        assert sample(samples, "supervisorq_job_wait_seconds_count", queue=Q) == 10
        assert sample(samples, "supervisorq_process_restarts_total",
                      program="w", reason="timeout") == 1
        assert sample(samples, "supervisorq_process_restarts_total",
                      program="w", reason="crash") == 1

        def recycled() -> dict | None:
            s = scrape(port)
            ok = (sample(s, "supervisorq_process_restarts_total", program="r",
                         reason="max_jobs") == 1
                  and sample(s, "supervisorq_queue_jobs", queue="gauge-q", state="ready") == 2
                  and sample(s, "supervisorq_processes", program="w", state="running") == 1)
            return s if ok else None
        samples = wait_until(recycled, timeout=15, message="max_jobs restart and gauges")
        assert sample(samples, "supervisorq_queue_jobs", queue="gauge-q", state="delayed") == 1
        assert sample(samples, "supervisorq_queue_jobs", queue="gauge-q", state="reserved") == 0
        assert sample(samples, "supervisorq_queue_jobs", queue="gauge-q", state="failed") == 0
        assert sample(samples, "supervisorq_queue_jobs", queue=Q, state="failed") == 4
        assert sample(samples, "supervisorq_queue_oldest_wait_seconds", queue="gauge-q") > 0
        [early] = [r for r in results(queue.client) if r.get("value") == "early"]
        waited = sample(samples, "supervisorq_job_wait_seconds_sum", queue="recycle-q")
        assert sample(samples, "supervisorq_job_wait_seconds_count", queue="recycle-q") == 1
        assert early["at"] - dispatched_at - 0.25 < waited <= early["at"] - dispatched_at

        # The buckets, read through the reader API by anyone (a second master, the
        # dashboard) with a client of its own.
        reader = connect(redis_url)
        want = {"done": 5, "failed": 2, "released": 1, "timeout": 1, "lost": 1, "started": 10}
        wait_until(lambda: fleet_totals(reader, Q, 10) == want, timeout=15,
                   message=f"buckets flushed: {fleet_totals(reader, Q, 10)}")
        series = read_series(reader, Q, 10)
        assert len(series) == 10 and series[0].at + 9 == series[-1].at
        assert sum(m.jobs["tests.noop"].outcomes.get("done", 0) for m in series
                   if "tests.noop" in m.jobs) == 3
    queue.client.close()


def test_bad_settings_file_keeps_the_previous_settings(tmp_path: Path, redis_url: str) -> None:
    first, second = free_port(), free_port()
    master = Master(tmp_path, redis_url, {"idle": IDLE})
    master.write("supervisor-q", f"metrics: {{bind: '127.0.0.1:{first}'}}\n")
    with master:
        wait_until(lambda: scrape(first), message="served on the first port")
        master.write("supervisor-q", "metrics: {bind: nowhere, retention: soon}\n")
        wait_until(lambda: "settings refused" in master.tail(), timeout=10,
                   message="the bad file reported")
        wait_until(lambda: "metrics.retention" in master.tail(), timeout=10)
        problems = [ln for ln in master.tail().splitlines() if "supervisor-q.yaml" in ln]
        assert len(problems) == 2, problems  # one log line each, as for program files
        assert all(" ERROR " in ln and "settings refused" in ln for ln in problems), problems
        assert "supervisor-q.yaml: metrics.bind: must be HOST:PORT" in problems[0]
        assert master.answers() and scrape(first)  # still running, still serving
        master.write("supervisor-q", f"metrics: {{bind: '127.0.0.1:{second}'}}\n")
        wait_until(lambda: _serves(second), timeout=10, message="moved to the second port")
        assert not _serves(first)
        assert master.program("idle")["name"] == "idle"  # not taken for a program


def _serves(port: int) -> bool:
    try:
        return bool(scrape(port))
    except OSError:
        return False


def test_jobs_failed_before_they_start_are_counted_as_failed(tmp_path: Path,
                                                            redis_url: str) -> None:
    """An unreadable payload, an unknown job or one out of attempts (its earlier ones
    released or lost) goes to the failed store without running:
    it is counted as failed all the same, under the name its payload gives, or
    `(unreadable)`, so the failure rate and the failed store agree."""
    port = free_port()
    master = Master(tmp_path, redis_url, {"w": WORKER})
    master.write("supervisor-q", f"metrics: {{bind: '127.0.0.1:{port}'}}\n")
    queue = RedisQueue(connect(redis_url))
    spent = dispatch("tests.release_once", queue=Q)  # tries=3: its 3 attempts used up here
    for _ in range(3):
        _, got = queue.reserve(Q, default_timeout=60)
        assert [j.id for j in got.jobs] == [spent] and queue.release(Q, spent)
    with master:
        [pid] = master.wait_running("w", 1)
        queue.push(Q, "garbage-1", "not json {")
        dispatch("tests.no_such_job", queue=Q)
        dispatch("tests.noop", queue=Q)
        want = {("(unreadable)", "failed"): 1, ("tests.no_such_job", "failed"): 1,
                ("tests.noop", "done"): 1, ("tests.release_once", "failed"): 1}

        def counted() -> dict | None:
            samples = scrape(port)
            return samples if {key: jobs(samples, *key) for key in want} == want else None
        wait_until(counted, timeout=20, message=f"counts; log: {master.tail()}")
        assert master.pids("w") == [pid]
        assert len(queue.failed_records()) == 3
    queue.client.close()
