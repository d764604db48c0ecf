"""Children's output in a real master: the master's log (tagged), log files with
rotation and SIGUSR2, `tail` (-n, -f, --master), job lines, and a chatty child that
must not delay a timeout kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
import tests.jobmods.logjobs  # noqa: F401
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.masters import Master, results

TICKER = "command: sh -c 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done'\n"
WORKER = "queues: [default]\nimport: [tests.jobmods.basic, tests.jobmods.logjobs]\n" \
         "startsecs: 0.2\n"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:  # between a rotation's rename and the new file
        return ""


def _cli(master: Master, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "supervisor_q", "--socket",
                             str(master.socket), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_output_goes_to_the_masters_log_tagged_and_a_dying_childs_partial_line_is_kept(
        master_factory) -> None:
    program = ("command: sh -c 'echo hello; echo oops >&2; printf partial; sleep 60'\n"
               "startsecs: 0\nnumprocs: 2\n")
    with master_factory({"echo": program}) as master:
        wait_until(lambda: master.tail(200).count("stderr: oops") == 2, timeout=10,
                   message="both children's stderr in the master's log")
        log = master.tail(200)
        assert " echo#1 stdout: hello" in log and " echo#2 stdout: hello" in log
        assert "partial" not in log  # no newline yet: held back
        master.call("stop", program="echo")
        wait_until(lambda: master.tail(200).count("stdout: partial") == 2, timeout=10,
                   message="the partial lines flushed at exit")


def test_log_files_rotate_at_maxbytes_keeping_backups_per_process(master_factory,
                                                                  short_tmp: Path) -> None:
    # 300 lines of 100 bytes each per process into 2 KiB files, 2 backups kept.
    line = "x" * 90
    program = (f"command: sh -c 'for i in $(seq 1000 1299); do echo \"$i {line}\"; done; "
               f"sleep 60'\nstartsecs: 0\nnumprocs: 2\n"
               f"stdout_logfile: {short_tmp}/w-{{process_num}}.log\n"
               f"logfile_maxbytes: 2KB\nlogfile_backups: 2\n")
    with master_factory({"w": program}) as master:
        for slot in (1, 2):
            path = short_tmp / f"w-{slot}.log"
            wait_until(lambda p=path: "1299 " in _read(p), timeout=10,
                       message=f"{path} has the last line")
            files = [path, Path(f"{path}.1"), Path(f"{path}.2")]
            assert not Path(f"{path}.3").exists()
            lines = []
            for f in reversed(files):
                assert f.stat().st_size <= 2048
                lines += f.read_text().splitlines()
            numbers = [int(x.split()[0]) for x in lines]  # whole lines, in order
            assert numbers == list(range(numbers[0], 1300)) and len(numbers) >= 40
        assert "w#1 stdout" not in master.tail(500)  # not in the master's log as well


def test_sigusr2_reopens_log_files(master_factory, short_tmp: Path) -> None:
    path = short_tmp / "t.log"
    with master_factory({"t": TICKER + f"stdout_logfile: {path}\n"}) as master:
        wait_until(lambda: "tick 3" in _read(path), timeout=10)
        path.rename(short_tmp / "t.log.old")  # logrotate's move
        master.signal(signal.SIGUSR2)
        wait_until(lambda: "tick" in _read(path), timeout=10,
                   message="lines in the reopened file")
        assert master.proc.poll() is None


def test_tail_prints_the_last_lines_and_follows(master_factory) -> None:
    with master_factory({"t": TICKER + "startsecs: 0\n"}) as master:
        wait_until(lambda: "t#1 stdout: tick 5" in master.tail(100), timeout=10)
        out = subprocess.run([sys.executable, "-m", "supervisor_q", "--socket",
                              str(master.socket), "tail", "-n", "2", "t#1"],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        assert [x.split()[0] for x in out.stdout.splitlines()] == ["tick", "tick"]
        follower = _cli(master, "tail", "-f", "-n", "1", "t")
        try:
            first = int(follower.stdout.readline().split()[1])
            seen = [int(follower.stdout.readline().split()[1]) for _ in range(5)]
            assert seen == list(range(first + 1, first + 6))  # new lines, none lost
        finally:
            follower.kill()
            follower.wait()


def test_tail_follows_a_log_file_across_rotation(master_factory, short_tmp: Path) -> None:
    path = short_tmp / "t.log"
    program = TICKER + f"stdout_logfile: {path}\nlogfile_maxbytes: 100\nlogfile_backups: 1\n"
    with master_factory({"t": program}) as master:
        wait_until(lambda: path.exists(), timeout=10)
        follower = _cli(master, "tail", "-f", "t#1")
        try:
            numbers = [int(follower.stdout.readline().split()[1]) for _ in range(30)]
            assert numbers == list(range(numbers[0], numbers[0] + 30))  # 100-byte files
        finally:
            follower.kill()
            follower.wait()


def test_tail_master_follows_the_masters_own_log(master_factory) -> None:
    with master_factory({"t": TICKER}) as master:
        follower = _cli(master, "tail", "-f", "--master")
        try:
            master.call("stop", program="t")
            for line in follower.stdout:
                if "t#1" in line and "(stop command)" in line:
                    break
        finally:
            follower.kill()
            follower.wait()


def test_tail_unknown_program_is_one_line(master_factory) -> None:
    with master_factory({"t": TICKER}) as master:
        out = subprocess.run([sys.executable, "-m", "supervisor_q", "--socket",
                              str(master.socket), "tail", "nope"],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 1
        assert out.stderr.startswith("supervisor-q tail: no program named 'nope'")
        assert len(out.stderr.splitlines()) == 1
        master.wait_running("t", 1)
        for args in (["t#9"], ["-f", "t#9"]):  # no such process: one line, never silence
            out = subprocess.run([sys.executable, "-m", "supervisor_q", "--socket",
                                  str(master.socket), "tail", *args],
                                 capture_output=True, text=True, timeout=20)
            assert out.returncode == 1, out
            assert out.stderr.startswith("supervisor-q tail: no process t#9 (it has #1)"), out


def test_job_lines_at_start_and_end_and_job_fields_on_records(master_factory,
                                                              redis_url: str) -> None:
    with master_factory({"w": WORKER, "q": WORKER.replace("[default]", "[quiet]")
                         + "log_jobs: false\n"}) as master:
        master.wait_running("w", 1)
        master.wait_running("q", 1)
        job_id = dispatch("tests.log_inside", "A")
        quiet_id = dispatch("tests.log_inside", "B", queue="quiet")
        wait_until(lambda: f"job {job_id} tests.log_inside on default: done in"
                   in master.tail(300), timeout=15, message="the job's end line")
        wait_until(lambda: "printed B" in master.tail(300), timeout=15)
        log = master.tail(300)
        assert f"job {job_id} tests.log_inside on default: started (attempt 1)" in log
        assert (f"app: inside A (job_id={job_id} job=tests.log_inside queue=default)"
                in log)
        [inside] = [ln for ln in log.splitlines() if "app: inside A" in ln]
        assert " WARNING [" in inside, inside  # the child's level, not the master's INFO
        assert "stderr: app: inside A" in inside, inside  # its level word shown once
        assert f"stderr: supervisor_q.jobs: job {job_id}" in log
        assert "w#1 stdout: printed A" in log
        assert f"job {quiet_id}" not in log  # log_jobs: false


CHATTY = """\
import os, time
chunk = (b"y" * 99 + b"\\n") * 1000  # 100 KB: 10 MB/s at 100 writes a second
while True:
    t = time.monotonic()
    os.write(1, chunk)
    time.sleep(max(0.0, 0.01 - (time.monotonic() - t)))
"""


def _logged_at(line: str) -> float:
    return datetime.fromisoformat(line.split()[0]).timestamp()


@pytest.mark.slow
def test_a_chatty_child_does_not_delay_a_timeout_kill(master_factory, redis_url: str,
                                                      short_tmp: Path) -> None:
    """Two children writing 10 MB/s (one to the master's log, one to a file) while a
    stuck job passes its timeout: the master's SIGTERM comes within 100 ms of when it
    is due, and control commands answer."""
    script = short_tmp / "chatty.py"
    script.write_text(CHATTY)
    chatty = f"command: {sys.executable} {script}\nstartsecs: 0\n"
    worker = WORKER + "timeout: 1\n"
    programs = {"w": worker, "loud": chatty,
                "filed": chatty + f"stdout_logfile: {short_tmp}/f.log\n"
                                  "logfile_maxbytes: 5MB\nlogfile_backups: 1\n"}
    with master_factory(programs) as master:
        master.wait_running("w", 1)
        wait_until(lambda: (short_tmp / "f.log").exists(), timeout=10)
        queue = RedisQueue(connect(redis_url))
        dispatch("tests.stuck_sleeping")  # asleep: no CPU taken from the master
        wait_until(lambda: results(queue.client), timeout=10)
        started = results(queue.client)[0]["at"]
        wait_until(queue.failed_records, timeout=10)  # cheap: the log is large
        line = next(x for x in master.log.read_text(errors="replace").splitlines()
                    if "passed its timeout: SIGTERM" in x)
        late = _logged_at(line) - (started + 1 + 0.5)  # timeout + deadlines.TERM_GRACE
        assert late < 0.1, f"SIGTERM {late:.3f}s late"
        t0 = time.monotonic()
        master.status()
        assert time.monotonic() - t0 < 0.5
        assert os.path.getsize(short_tmp / "f.log") > 0


def test_a_removed_programs_output_rings_are_freed(master_factory) -> None:
    """Removed, then added again under the same name: none of the old output is left."""
    once = "command: sh -c 'echo first-life; sleep 60'\nstartsecs: 0\n"
    with master_factory({"gone": once}) as master:
        wait_until(lambda: "first-life" in master.call("tail", program="gone")["data"],
                   timeout=10)
        master.remove("gone")
        master.call("reload")
        wait_until(lambda: "gone: removed" in master.tail(100_000), timeout=15)
        master.write("gone", "command: sh -c 'echo second-life; sleep 60'\nstartsecs: 0\n")
        master.call("reload")
        wait_until(lambda: "second-life" in master.call("tail", program="gone")["data"],
                   timeout=10)
        assert "first-life" not in master.call("tail", program="gone", lines=100)["data"]


def test_tail_of_a_log_file_that_cannot_be_opened_reads_the_ring(master_factory) -> None:
    """Its lines went to the master's log (said once); `tail` shows them, not nothing."""
    program = ("command: sh -c 'echo unfiled-line; sleep 60'\nstartsecs: 0\n"
               "stdout_logfile: /proc/nope/x.log\n")
    with master_factory({"unw": program}) as master:
        wait_until(lambda: "unw#1 stdout: unfiled-line" in master.tail(100_000), timeout=10)
        assert "cannot open log file /proc/nope/x.log" in master.tail(100_000)
        out = _cli(master, "tail", "unw")
        stdout, _ = out.communicate(timeout=20)
        assert out.returncode == 0 and "unfiled-line" in stdout


def test_control_characters_of_a_child_are_escaped_in_the_text_log(master_factory) -> None:
    """ESC, BEL and CR from a child would recolour a terminal or fake a log line."""
    program = ("command: printf '\\033[31mRED\\033[0m bell\\007 cr\\rX\\n'\n"
               "startsecs: 0\nautorestart: false\n")
    with master_factory({"esc": program}) as master:
        wait_until(lambda: "esc#1 stdout:" in master.tail(100_000), timeout=10)
        line = next(x for x in master.log.read_text().splitlines() if "esc#1 stdout:" in x)
        assert line.endswith(r"\x1b[31mRED\x1b[0m bell\x07 cr\x0dX"), repr(line)
        assert "\x1b" not in master.log.read_text()
