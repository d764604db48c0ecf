"""Issue-15 user trial, master side: a SIGKILLed child's replacement is logged as
replacing it (not "scale up"), a SIGKILLed zygote's log line names the signal, and plain
`status` shows the zygote and a preload error. A real master, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor_q.queue.restart import signal_restart
from tests.helpers import wait_until
from tests.master.test_preload import preload, program, write_module, zygote
from tests.masters import Master

pytestmark = pytest.mark.slow


def status_text(master: Master) -> str:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--socket",
                           str(master.socket), "status"], capture_output=True, text=True,
                          timeout=30).stdout


def test_replacement_reason_zygote_signal_and_status_lines(short_tmp: Path,
                                                           redis_url: str) -> None:
    import redis

    code = short_tmp / "code"
    code.mkdir()
    write_module(code, "v1")
    with Master(short_tmp, redis_url, {"pre": program(code, 2)}) as master:
        before = master.wait_running("pre", 2)
        first = zygote(master)
        shown = status_text(master)
        assert f"zygote             pid={first:<7} ready" in shown, shown
        os.kill(before[0], signal.SIGKILL)
        wait_until(lambda: f"new -> starting (replaces pid={before[0]})" in master.tail(300),
                   timeout=15, message="the replacement logged as one")
        assert "(scale up)" not in master.tail(300)
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: f"zygote pid={first} killed by SIGKILL" in master.tail(300),
                   timeout=15, message="the zygote's end with its signal")
        second = wait_until(lambda: (z := preload(master)["zygote_pid"]) not in (None, first)
                            and z, timeout=20, message="a new zygote")
        (code / "pre_jobs.py").write_text("raise RuntimeError('half-deployed')\n")
        signal_restart(redis.Redis.from_url(redis_url))
        wait_until(lambda: preload(master)["error"], timeout=20)
        shown = status_text(master)
        assert f"zygote             pid={second:<7} ready" in shown, shown
        assert "preload error" in shown and "half-deployed" in shown, shown
        assert all(line.count("\n") == 0 for line in shown.splitlines())
