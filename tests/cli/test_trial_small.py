"""Small things from the issue-12 user trial: `dashboard` with a bad Redis URL says so
before any banner, `status` shows no pid or uptime for a FATAL child, and the 401 login
page offers no "Log out"."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.masters import Master
from tests.web.dashboard import client_for


def test_dashboard_with_a_bad_redis_url_prints_no_banner() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "supervisor_q", "dashboard", "--redis-url",
                           "localhost:6379", "--bind", f"127.0.0.1:{port}"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "bad Redis URL 'localhost:6379'" in done.stderr
    assert "dashboard on http" not in done.stderr


@pytest.mark.slow
def test_status_shows_no_pid_or_uptime_for_a_fatal_child(short_tmp: Path,
                                                         redis_url: str) -> None:
    broken = "queues: [f]\nimport: [tests.jobmods.does_not_exist]\nstartretries: 1\n"
    with Master(short_tmp, redis_url, {"broken": broken}) as master:
        wait_until(lambda: master.program("broken")["processes"][0]["state"] == "fatal",
                   timeout=20, message="FATAL")
        shown = subprocess.run([sys.executable, "-m", "supervisor_q", "--socket",
                                str(master.socket), "status"], capture_output=True, text=True,
                               timeout=30).stdout
    line = next(ln for ln in shown.splitlines() if "fatal" in ln and "pid=" in ln)
    assert "pid=- " in line and " up " not in line and "down" in line, line
    assert "broken" in shown and "0/1" in shown, shown


def test_the_401_login_page_has_no_log_out_button(redis_url: str) -> None:
    client, _ = client_for(redis_url, token="t" * 20)
    page = client.get("/")
    assert page.status_code == 401 and "Log in" in page.text and "Log out" not in page.text
    client.headers["Authorization"] = "Bearer " + "t" * 20
    assert "Log out" in client.get("/").text
