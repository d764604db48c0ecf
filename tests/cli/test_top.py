"""`supervisor-q top`: one frame of a real master (--once, and --all from Redis), no master
(one line, exit 1), and the live view in a real pseudo-terminal: cbreak while it runs,
`q` quits within a second, Ctrl-C exits cleanly, the terminal mode restored."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.jobs.registry import dispatch
from tests.helpers import wait_until
from tests.masters import Master

pytestmark = pytest.mark.slow
WORKER = "queues: [topq, topidle]\nimport: [tests.jobmods.basic]\nnumprocs: 1\n"


@pytest.fixture
def busy_master(short_tmp: Path, redis_url: str) -> Iterator[Master]:
    """A master whose one child runs a long job, two more jobs waiting (over max_size)."""
    master = Master(short_tmp, redis_url, {"toppy": WORKER})
    master.write("supervisor-q", "alerts: {max_size: 1, every: 0.2}\n")
    with master:
        for _ in range(3):
            dispatch("tests.sleep", 30, queue="topq")
        wait_until(lambda: master.program("toppy")["processes"][0]["job"], timeout=15,
                   message="the child runs a job")
        master.wait_running("toppy", 1)
        yield master


def top(master: Master, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SUPERVISOR_Q_SOCKET": str(master.socket)}
    return subprocess.run([sys.executable, "-m", "supervisor_q", "top", *args], env=env,
                          capture_output=True, text=True, timeout=20)


def test_top_once_shows_programs_children_jobs_and_queues(busy_master: Master) -> None:
    wait_until(lambda: busy_master.status()["master"]["alerts"], message="alert active")
    result = top(busy_master, "--once")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    program = next(ln for ln in lines if "toppy " in ln and "worker" in ln)
    assert "running" in program and "1 running" in program
    child = next(ln for ln in lines if "toppy#" in ln)
    assert "tests.sleep" in child and "topq" in child
    rows = {cells[0]: cells for ln in lines if len(cells := row(ln)) == 8}
    assert rows["topq"][1:5] == ["2", "0", "1", "0"]  # ready delayed reserved failed
    assert rows["topidle"][1:5] == ["0", "0", "0", "0"]
    assert "ALERT queue topq has 2 jobs waiting (over 1)" in result.stdout
    status = subprocess.run([sys.executable, "-m", "supervisor_q", "status"], capture_output=True,
                            text=True, timeout=20,
                            env={**os.environ, "SUPERVISOR_Q_SOCKET": str(busy_master.socket)})
    assert "ALERT queue topq has 2 jobs waiting (over 1)" in status.stdout
    fleet = top(busy_master, "--once", "--all")
    assert fleet.returncode == 0 and "toppy#" in fleet.stdout, fleet.stderr


def row(line: str) -> list[str]:
    """The cells of one table row as rich draws it."""
    return [cell.strip() for cell in line.strip().strip("│").split("│")]


def test_top_without_a_master_is_one_line(short_tmp: Path) -> None:
    env = {**os.environ, "SUPERVISOR_Q_SOCKET": str(short_tmp / "none.sock")}
    result = subprocess.run([sys.executable, "-m", "supervisor_q", "top", "--once"], env=env,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert result.stderr.startswith("supervisor-q top: no master is listening")
    assert len(result.stderr.splitlines()) == 1


class Terminal:
    """`supervisor-q top` in a real pseudo-terminal; output drained as it comes."""

    def __init__(self, master: Master) -> None:
        env = {**os.environ, "SUPERVISOR_Q_SOCKET": str(master.socket), "TERM": "xterm"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: top on the pty's slave side
            os.execve(sys.executable, [sys.executable, "-m", "supervisor_q", "top"], env)
        self.before = termios.tcgetattr(self.fd)
        self.output = b""

    def read(self) -> bytes:
        while select.select([self.fd], [], [], 0.05)[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        return self.output

    def cbreak(self) -> bool:
        return not termios.tcgetattr(self.fd)[3] & termios.ICANON

    def exit_code(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read()
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        return None

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


@pytest.mark.parametrize("key", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_top_live_quits_and_restores_the_terminal(busy_master: Master, key: bytes) -> None:
    term = Terminal(busy_master)
    try:
        assert not term.cbreak(), "the pty starts in canonical mode"
        wait_until(lambda: b"toppy#" in term.read() and term.cbreak(), timeout=15,
                   message="a frame drawn, stdin in cbreak mode")
        os.write(term.fd, key)
        started = time.monotonic()
        code = term.exit_code(timeout=3)
        assert code in ((0,) if key == b"q" else (0, 130)), term.output[-500:]
        if key == b"q":
            assert time.monotonic() - started < 1.0
        after = termios.tcgetattr(term.fd)
        assert after[3] == term.before[3], "local modes (ICANON, ECHO) restored"
        assert b"Traceback" not in term.output
    finally:
        term.close()
