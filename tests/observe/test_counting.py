"""Counting, report lines, the buckets' reader API, restart reasons and the settings file,
without a master (the real-master tests are in test_metrics_master.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

from supervisor_q.clock import Clock
from supervisor_q.config.loading import ConfigError, load_config_dir
from supervisor_q.config.settings import MasterSettings, load_master_settings
from supervisor_q.master.metering import Metering
from supervisor_q.master.reports import ReportReader
from supervisor_q.master.wakeup import Wakeup
from supervisor_q.observe.buckets import bucket_key, fleet_totals, flush, read_series
from supervisor_q.observe.counters import Counters, restart_reason
from supervisor_q.worker.report import PipeReporter, parse_lines


def _exit(code: int) -> int:
    return code << 8  # a waitpid status for exit(code)


def test_report_lines_carry_wait_and_outcome_and_old_lines_still_parse() -> None:
    read_fd, write_fd = os.pipe()
    reporter = PipeReporter(write_fd)
    reporter.job_started("id 1", "tests.noop", "q", 30.0, 2, wait=1.25)
    reporter.job_finished("id 1", "released")
    old = b'S 30.0 1 5.0 ["a","q","n"]\nE 6.0 "a"\n'
    events, rest = parse_lines(os.read(read_fd, 65536) + old)
    os.close(read_fd)
    os.close(write_fd)
    assert rest == b""
    assert [(e.kind, e.job_id, e.wait, e.outcome) for e in events] == [
        ("started", "id 1", 1.25, "done"), ("finished", "id 1", 0.0, "released"),
        ("started", "a", 0.0, "done"), ("finished", "a", 0.0, "done")]
    bad, _ = parse_lines(b'E 6.0 exploded "a"\nS 1 1 1 ["a","q","n",-1]\nS 1 1 1 "abc"\n')
    assert [e.kind for e in bad] == ["garbled"] * 3


def test_restart_reasons() -> None:
    assert restart_reason(_exit(10), None, False) == "max_jobs"
    assert restart_reason(_exit(11), None, False) == "max_time"
    assert restart_reason(_exit(12), None, False) == "memory"
    assert restart_reason(_exit(13), None, False) == "deploy"
    assert restart_reason(_exit(14), None, False) == "timeout"
    assert restart_reason(_exit(7), None, False) == "crash"
    assert restart_reason(9, None, False) == "crash"  # killed by SIGKILL, not by us
    assert restart_reason(9, "memory", False) == "memory"
    assert restart_reason(9, "timeout", True) == "timeout"
    assert restart_reason(_exit(0), None, False) is None
    assert restart_reason(15, None, True) is None  # asked to stop


def test_buckets_add_up_across_masters_and_read_back(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    now = 1_800_000_000.0  # a fixed epoch second
    minute = int(now) // 60
    for _ in range(2):  # two masters flush their own counts
        counters = Counters()
        counters.started("q", "a:b", 0.5, minute - 1)
        counters.finished("q", "a:b", "done", 0.2, minute - 1)
        counters.finished("q", "a:b", "failed", 0.3, minute)
        flush(client, counters.take_pending(), retention=3600)
    series = read_series(client, "q", 3, now=now)
    assert [m.at for m in series] == [minute - 2, minute - 1, minute]
    assert series[0].jobs == {}
    job = series[1].jobs["a:b"]
    assert (job.outcomes, job.runtime_ms, job.started, job.wait_ms) == ({"done": 2}, 400, 2,
                                                                       1000)
    assert series[2].outcome("failed") == 2
    assert fleet_totals(client, "q", 3, now=now) == {"done": 2, "failed": 2, "started": 2}
    ttl = client.ttl(bucket_key("q", minute // 60))
    assert 3600 < ttl <= 7200
    client.close()


def test_a_failed_flush_keeps_the_counts(tmp_path: Path, redis_url: str) -> None:
    """Redis away: the deltas stay (and the master waits longer); back: all arrive once."""
    reader = ReportReader(Wakeup(), Clock())
    gone = f"unix://{tmp_path}/no-such.sock"
    metering = Metering(tmp_path, gone, reader.wakeup, reader, MasterSettings())
    minute = int(time.time()) // 60
    assert reader.counters is metering.counters
    metering.counters.finished("q", "j", "done", 0.1, minute)
    started = time.monotonic()
    metering.flush(100.0)
    assert time.monotonic() - started < 2
    assert metering.next_flush == 110.0  # backed off from 5 s to 10 s
    metering.counters.finished("q", "j", "done", 0.1, minute)
    metering.redis_url, metering.client = redis_url, None
    metering.flush(110.0)
    client = redis.Redis.from_url(redis_url)
    assert fleet_totals(client, "q", 2) == {"done": 2}
    metering.flush(120.0)  # nothing twice
    assert fleet_totals(client, "q", 2) == {"done": 2}
    client.close()
    metering.close()


def test_settings_file(tmp_path: Path) -> None:
    assert load_master_settings(tmp_path) == MasterSettings()
    (tmp_path / "supervisor-q.yaml").write_text(
        "metrics: {bind: '[::1]:9808', retention: 90m, enabled: false}\n")
    metrics = load_master_settings(tmp_path).metrics
    assert (metrics.bind, metrics.retention, metrics.enabled) == ("[::1]:9808", 5400.0, False)
    assert load_config_dir(tmp_path) == {}  # a reserved name, never a program
    (tmp_path / "supervisor-q.yaml").write_text("metrics: {bind: 9808, colour: red}\n")
    with pytest.raises(ConfigError) as caught:
        load_master_settings(tmp_path)
    path = tmp_path / "supervisor-q.yaml"
    assert caught.value.problems == [
        f"{path}: metrics.bind: must be a string (quote it), got int 9808",
        f"{path}: metrics.colour: unknown key"]


def test_counts_by_label_are_right_through_the_cached_children() -> None:
    counters = Counters()
    for n in range(3):
        counters.started("q", "a", 0.002, 7)
        counters.finished("q", "a", "done" if n else "failed", 0.02, 7)
    counters.started("r", "a", 20.0, 7)
    counters.finished("r", "a", "done", 40.0, 8)
    sample = counters.registry.get_sample_value
    assert sample("supervisorq_jobs_total", {"queue": "q", "job": "a", "outcome": "done"}) == 2
    assert sample("supervisorq_jobs_total", {"queue": "q", "job": "a", "outcome": "failed"}) == 1
    assert sample("supervisorq_jobs_total", {"queue": "r", "job": "a", "outcome": "done"}) == 1
    assert sample("supervisorq_job_wait_seconds_count", {"queue": "q"}) == 3
    assert sample("supervisorq_job_wait_seconds_bucket", {"queue": "r", "le": "10.0"}) == 0
    assert sample("supervisorq_job_wait_seconds_bucket", {"queue": "r", "le": "30.0"}) == 1
    assert sample("supervisorq_job_duration_seconds_sum", {"queue": "q", "job": "a"}) == \
        pytest.approx(0.06)
    assert sample("supervisorq_job_duration_seconds_count", {"queue": "r", "job": "a"}) == 1
    assert counters.take_pending() == {
        "q": {"7:a:started": 3, "7:a:wait_ms": 6, "7:a:done": 2, "7:a:failed": 1,
              "7:a:runtime_ms": 60},
        "r": {"7:a:started": 1, "7:a:wait_ms": 20000, "8:a:done": 1, "8:a:runtime_ms": 40000}}


def test_given_back_counts_add_to_newer_ones_for_job_names_with_colons() -> None:
    counters = Counters()
    counters.started("q", "app.jobs:send", 0.0004, 7)  # a wait of 0 ms is still a field
    counters.finished("q", "app.jobs:send", "failed", 0.25, 7)
    taken = counters.take_pending()
    assert taken == {"q": {"7:app.jobs:send:started": 1, "7:app.jobs:send:wait_ms": 0,
                           "7:app.jobs:send:failed": 1, "7:app.jobs:send:runtime_ms": 250}}
    counters.finished("q", "app.jobs:send", "failed", 0.5, 7)
    counters.give_back(taken)
    assert counters.take_pending() == {"q": {
        "7:app.jobs:send:started": 1, "7:app.jobs:send:wait_ms": 0,
        "7:app.jobs:send:failed": 2, "7:app.jobs:send:runtime_ms": 750}}
    assert counters.take_pending() == {}


def test_pending_fields_are_bounded_while_redis_is_away(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("supervisor_q.observe.counters.MAX_PENDING_FIELDS", 6)
    counters = Counters()
    for minute in range(5):  # 4 fields a minute: the third minute is past the bound
        counters.started("q", "j", 0.1, minute)
        counters.finished("q", "j", "done", 0.1, minute)
    counters.finished("q", "j", "done", 0.1, 0)  # a field already pending still counts
    pending = counters.take_pending()["q"]
    assert pending == {"0:j:started": 1, "0:j:wait_ms": 100, "0:j:done": 2,
                       "0:j:runtime_ms": 200, "1:j:started": 1, "1:j:wait_ms": 100}
    assert counters.job_metrics.outcomes[("q", "j", "done")] == 6  # Prometheus: all of them
