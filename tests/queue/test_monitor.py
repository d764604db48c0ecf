"""Queue monitor: the pure threshold check and `supervisor-q queue monitor`."""

from __future__ import annotations

import subprocess
import sys

from supervisor_q.queue.monitor import Thresholds, check_thresholds
from tests.jobmods.flows import step


def test_check_thresholds_names_each_breach() -> None:
    loads = {"emails": (1200, 5.0), "sms": (3, 400.0), "ok": (1, 1.0)}
    alerts = check_thresholds(loads, Thresholds(max_size=1000, max_wait=60))
    assert alerts == ["queue emails has 1200 jobs waiting (over 1000)",
                      "queue sms: oldest job has waited 400s (over 60s)"]
    assert check_thresholds(loads, Thresholds()) == []


def test_queue_monitor_exit_code_and_message(redis_url: str) -> None:
    for i in range(3):
        step.dispatch(i)

    def monitor(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                               "queue", "monitor", "default,empty", *flags],
                              capture_output=True, text=True, timeout=30)

    over = monitor("--max", "2")
    assert over.returncode == 1
    assert "queue default has 3 jobs waiting (over 2)" in over.stderr
    assert "empty: 0 waiting" in over.stdout
    fine = monitor("--max", "3")
    assert fine.returncode == 0 and "ALERT" not in fine.stderr
