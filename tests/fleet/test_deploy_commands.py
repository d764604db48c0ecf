"""`restart-workers` restarts the `command:` programs that opt in (`restart_on_deploy`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from supervisor_q.config.loading import ConfigError, load_config_dir
from tests.helpers import wait_until
from tests.masters import Master

SLEEPER = "command: python -c 'import time; time.sleep(600)'\nstartsecs: 0.2\nstopwaitsecs: 2\n"


@pytest.mark.slow
def test_restart_workers_replaces_opted_in_commands_only(short_tmp: Path,
                                                         redis_url: str) -> None:
    programs = {"deployed": SLEEPER + "restart_on_deploy: true\n", "kept": SLEEPER}
    with Master(short_tmp, redis_url, programs) as master:
        before = {name: master.wait_running(name, 1) for name in programs}
        done = subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                               "restart-workers"], capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, done.stderr
        after = wait_until(lambda: (pids := master.pids("deployed")) and pids != before[
            "deployed"] and pids, timeout=10, message="the opted-in command replaced")
        assert len(after) == 1
        assert master.pids("kept") == before["kept"]  # not opted in: left running
        assert "restart_on_deploy" in master.tail(80)


def test_restart_on_deploy_is_a_strict_boolean(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("command: sleep 1\nrestart_on_deploy: 'yes'\n")
    with pytest.raises(ConfigError, match="restart_on_deploy"):
        load_config_dir(tmp_path)
    (tmp_path / "c.yaml").write_text("command: sleep 1\nrestart_on_deploy: true\n")
    assert load_config_dir(tmp_path)["c"].restart_on_deploy is True


# Binds 127.0.0.1:(base + slot), logs start/term/exit with wall times, and takes
# 1.5 s to exit on SIGTERM: a second copy started early would fail with EADDRINUSE.
PORT_HOLDER = """\
import os, signal, socket, sys, time
port, events = int(sys.argv[1]) + int(sys.argv[2]), sys.argv[3]
def note(what):
    with open(events, "a") as f:
        f.write(f"{what} {sys.argv[2]} {os.getpid()} {time.time()}\\n")
sock = socket.socket()
sock.bind(("127.0.0.1", port))
sock.listen()
def term(*_):
    note("term")
    time.sleep(1.5)
    note("exit")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
note("start")
while True:
    time.sleep(1)
"""


@pytest.mark.slow
def test_deploy_restart_stops_then_starts_one_process_at_a_time(short_tmp: Path,
                                                                redis_url: str) -> None:
    from tests.sentinels import free_port
    script, events = short_tmp / "holder.py", short_tmp / "events"
    script.write_text(PORT_HOLDER)
    base = free_port()
    while base + 2 > 65535:
        base = free_port()
    program = (f"command: {sys.executable} {script} {base} {{process_num}} {events}\n"
               "numprocs: 2\nstartsecs: 0.3\nstopwaitsecs: 10\nrestart_on_deploy: true\n")
    with Master(short_tmp, redis_url, {"port": program}) as master:
        before = master.wait_running("port", 2)
        done = subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                               "restart-workers"], capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, done.stderr

        def replaced() -> list[int] | None:
            pids = master.pids("port")
            return pids if len(pids) == 2 and not set(pids) & set(before) else None
        wait_until(replaced, timeout=15, message=f"both replaced; log: {master.tail()}")
        slots = sorted(p["slot"] for p in master.program("port")["processes"])
        assert slots == [1, 2], slots  # the same slot numbers, not #3, #4
        log = master.tail(200)
        assert "Address already in use" not in log and "FATAL" not in log, log
    rows = [line.split() for line in events.read_text().splitlines()]
    at = {(what, int(pid)): float(t) for what, _, pid, t in rows}
    new = {int(slot): int(pid) for what, slot, pid, _ in rows if int(pid) not in before
           and what == "start"}
    old = {int(slot): int(pid) for what, slot, pid, _ in rows if int(pid) in before
           and what == "start"}
    for slot in (1, 2):  # stop, then start: the old process exited before the new one
        assert at[("exit", old[slot])] < at[("start", new[slot])], rows
    first, second = sorted((1, 2), key=lambda s: at[("term", old[s])])
    # one at a time: the second was asked to stop only after the first's successor started
    assert at[("start", new[first])] < at[("term", old[second])], rows


def test_a_key_of_the_other_kind_of_program_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text("queues: [q]\nimport: [json]\nrestart_on_deploy: true\n")
    (tmp_path / "c.yaml").write_text("command: sleep 1\nbalance: simple\n")
    (tmp_path / "a.yaml").write_text("queues: [q]\nimport: [json]\nautorestart: false\n")
    done = subprocess.run([sys.executable, "-m", "supervisor_q", "check-config", str(tmp_path)],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert sorted(lines) == [
        f"{tmp_path}/a.yaml: autorestart: applies to command programs (command:) only",
        f"{tmp_path}/c.yaml: balance: applies to worker programs (queues:) only",
        f"{tmp_path}/w.yaml: restart_on_deploy: only command programs can restart on deploy "
        "(workers always do)"], lines


@pytest.mark.slow
def test_a_successor_that_fails_to_start_halts_the_deploy_roll(short_tmp: Path,
                                                               redis_url: str) -> None:
    flag = short_tmp / "broken"
    program = (f"command: sh -c 'test -e {flag} && exit 1; exec sleep 600'\n"
               "numprocs: 2\nstartsecs: 0.5\nstartretries: 1\nstopwaitsecs: 2\n"
               "restart_on_deploy: true\n")
    with Master(short_tmp, redis_url, {"broken": program}) as master:
        before = master.wait_running("broken", 2)
        wait_until(lambda: all(psutil.Process(pid).name() == "sleep" for pid in before),
                   message="both past the flag test")  # (exec'd: running for good)
        flag.touch()  # the "new release" cannot start
        done = subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                               "restart-workers"], capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, done.stderr
        wait_until(lambda: any(p["state"] == "fatal"
                               for p in master.program("broken")["processes"]),
            timeout=15, message=f"the successor FATAL; log: {master.tail()}")
        kept = master.pids("broken")
        assert len(kept) == 1 and kept[0] in before, master.tail(60)  # the other still serves
        seen = master.status()["master"]["restart_seen_ago"]
        wait_until(lambda: master.status()["master"]["restart_seen_ago"] > seen + 2.5,
                   timeout=10, message="a few more restart-signal reads")
        assert master.pids("broken") == kept  # still: the roll stopped at the failure
