"""`run --metrics HOST:PORT` and `check-config` with a settings file, through the CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_until
from tests.masters import Master
from tests.observe.test_metrics_master import IDLE, free_port, scrape


def supervisor_q(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", *args], capture_output=True,
                          text=True, timeout=30)


def test_run_metrics_flag_wins_over_the_settings_file(tmp_path: Path, redis_url: str) -> None:
    flag, file = free_port(), free_port()
    worker = "queues: [deploy-q]\nimport: [tests.jobmods.basic]\nstartsecs: 0.2\n"
    master = Master(tmp_path, redis_url, {"idle": IDLE, "w": worker},
                    run_args=["--metrics", f"127.0.0.1:{flag}"])
    master.write("supervisor-q", f"metrics: {{bind: '127.0.0.1:{file}'}}\n")
    with master:
        silent = socket.create_connection(("127.0.0.1", flag))  # connects, never asks
        wait_until(lambda: ("supervisorq_queue_jobs", (("queue", "gauge-q"), ("state", "ready")))
                   in scrape(flag), message="the idle program's queue measured")
        try:
            scrape(file)
        except OSError:
            pass
        else:
            raise AssertionError("the settings file's bind served although --metrics was given")
        assert master.status()["programs"]  # a silent client never holds up the master
        silent.close()
        old = master.wait_running("w", 1)
        assert supervisor_q("restart-workers").returncode == 0
        wait_until(lambda: master.wait_running("w", 1) != old, timeout=15,
                   message="the worker restarted for the deploy")
        wait_until(lambda: scrape(flag).get(("supervisorq_process_restarts_total",
                                             (("program", "w"), ("reason", "deploy")))) == 1,
                   message="one restart for the deploy")


def test_bad_metrics_flag_and_settings_are_one_line(tmp_path: Path) -> None:
    confd = tmp_path / "conf.d"
    confd.mkdir()
    done = supervisor_q("--redis-url", "redis://127.0.0.1:1/0", "run", "--config", str(confd),
                        "--metrics", "9808")
    assert done.returncode == 2
    assert done.stderr.strip() == ("supervisor-q run: --metrics: must be HOST:PORT "
                                   "(e.g. 127.0.0.1:9808), got '9808'")
    done = supervisor_q("--redis-url", "redis://127.0.0.1:1/0", "run", "--config", str(confd),
                        "--metrics", "http://127.0.0.1:9000")  # the trial's URL
    assert done.returncode == 2
    assert done.stderr.strip() == ("supervisor-q run: --metrics: must be HOST:PORT "
                                   "(e.g. 127.0.0.1:9808), got 'http://127.0.0.1:9000'")
    (confd / "supervisor-q.yaml").write_text("metrics: {retention: 90d}\n")
    done = supervisor_q("check-config", str(confd))
    assert done.stderr.strip().endswith("metrics.retention: must be at most 30d, got 90d")
    (confd / "supervisor-q.yaml").write_text("metrics: {retention: forever}\n")
    done = supervisor_q("check-config", str(confd))
    assert done.returncode == 1
    assert done.stderr.strip() == (f"{confd / 'supervisor-q.yaml'}: metrics.retention: must be "
                                   f"seconds or a duration like 24h, got 'forever'")
