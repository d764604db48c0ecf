"""`metrics: {enabled: false}` then `{enabled: true}` in supervisor-q.yaml under
`run --metrics`: the counters keep their counts across the toggle (a Prometheus counter
never resets while the process lives) and SIGTERM still ends the master cleanly."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.jobs.registry import dispatch
from tests.helpers import wait_until
from tests.masters import Master
from tests.observe.test_metrics_master import WORKER, _serves, free_port, jobs, scrape

pytestmark = pytest.mark.slow


def test_counts_survive_a_metrics_toggle_and_sigterm_exits_cleanly(
        tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    master = Master(tmp_path, redis_url, {"w": WORKER}, run_args=["--metrics", f"127.0.0.1:{port}"])
    with master:
        master.wait_running("w", 1)
        dispatch("tests.noop", queue="metrics-q")
        wait_until(lambda: jobs(scrape(port), "tests.noop", "done") == 1, timeout=15,
                   message="the job counted")
        master.write("supervisor-q", "metrics: {enabled: false}\n")
        wait_until(lambda: not _serves(port), timeout=10, message="metrics off")
        master.write("supervisor-q", "metrics: {enabled: true}\n")
        wait_until(lambda: _serves(port), timeout=10, message="metrics on again")
        assert jobs(scrape(port), "tests.noop", "done") == 1, "kept across the toggle"
        dispatch("tests.noop", queue="metrics-q")
        wait_until(lambda: jobs(scrape(port), "tests.noop", "done") == 2, timeout=15,
                   message="counting again")
        master.proc.send_signal(signal.SIGTERM)
        assert master.wait_exit() == 0, master.tail()
    assert "Traceback" not in master.tail(200), master.tail(200)
