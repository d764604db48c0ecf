"""Hostile and stray program files, as users meet them: `supervisor-q check-config` as a
command and a real master reading a real conf.d, with a real job stuck in C."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.ctl.protocol import ControlError
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.backend import RedisQueue, connect
from tests.config.test_config_reload import IDLE, check_config, log_lines, stays
from tests.helpers import wait_until
from tests.masters import Master, results

HOSTILE = {
    "integer": ("queues: [q]\nnumprocs: " + "9" * 5000 + "\n",
                "numprocs: an integer of 5000 characters is too long"),
    "flow nesting": ("queues: " + "[" * 20_000 + "]" * 20_000 + "\n", "nesting depth"),
    "block nesting": ("queues:\n" + "- " * 20_000 + "x\n",
                      "queues.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0: nested more than 20 "
                      "levels deep"),
}


@pytest.fixture
def master(short_tmp: Path, redis_url: str) -> Iterator[Master]:
    with Master(short_tmp, redis_url, {"a": IDLE}) as running:
        yield running


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_yaml_is_one_line_and_the_master_lives_on(master: Master, case: str) -> None:
    text, expected = HOSTILE[case]
    (master.tmp / "check").mkdir()
    (master.tmp / "check" / "w.yaml").write_text(text)
    result = check_config(master.tmp / "check")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{master.tmp}/check/w.yaml: ") and expected in line
    master.write("w", text)
    wait_until(lambda: log_lines(master, expected), timeout=10)
    with pytest.raises(ControlError) as refused:
        master.call("reload")
    assert expected in str(refused.value) and len(str(refused.value)) < 500
    assert not log_lines(master, "Traceback") and not log_lines(master, "iteration failed")
    assert master.call("ping") == "pong"


def test_huge_program_files_never_stall_the_master(short_tmp: Path, redis_url: str) -> None:
    """A 900 KB file and 300 invalid 50 KB files land in conf.d while a job is stuck in C:
    the job is still killed at its timeout and run once; reload and check-config answer."""
    worker = "queues: [default]\nimport: [tests.jobmods.basic]\nstartsecs: 0.2\n"
    queue = RedisQueue(connect(redis_url))
    with Master(short_tmp, redis_url, {"w": worker}) as master:
        master.wait_running("w", 1)
        dispatch("tests.stuck_in_c")  # timeout=1, blocks SIGALRM and SIGTERM, spins in C
        wait_until(lambda: results(queue.client), timeout=10)
        started = results(queue.client)[0]["at"]
        (master.confd / "a-huge.yaml").write_text(
            "queues: [" + ", ".join(["a"] * 300_000) + "]\n")
        for i in range(300):
            (master.confd / f"bad{i:03}.yaml").write_text(
                "queues: [" + ", ".join(["a"] * 16_000) + "]\nnumprocs: -1\n")
        wait_until(lambda: queue.failed_records(), timeout=30)
        killed_after = queue.failed_records()[0]["failed_at"] - started
        assert killed_after < 1 + 4, f"killed {killed_after:.2f}s after start (timeout 1s)"
        stays(lambda: len(results(queue.client)) == 1)  # never run a second time
        begun = time.monotonic()
        with pytest.raises(ControlError) as refused:
            master.call("reload")
        assert time.monotonic() - begun < 2
        assert "a-huge.yaml: file is 900009 bytes, more than the 256 KiB" in str(refused.value)
        begun = time.monotonic()
        result = check_config(master.confd)
        assert result.returncode == 1 and time.monotonic() - begun < 10
        assert "stopped reading before" in result.stderr.splitlines()[-1]


def test_editor_lock_files_and_hidden_files_are_ignored(master: Master) -> None:
    (master.confd / ".#a.yaml").symlink_to("me@host.4242:1700000000")  # Emacs: modified
    (master.confd / ".hidden.yaml").write_text(IDLE)
    (master.confd / ".broken.yml").write_text("queues: [q]\nnumprocs: -2\n")
    result = check_config(master.confd)
    assert (result.returncode, result.stdout, result.stderr) == (0, "a: ok (worker)\n", "")
    master.write("a", IDLE + "sleep: 2\n")
    wait_until(lambda: log_lines(master, "config reloaded: replaced: a"), timeout=10)
    # The watcher already applied the edit: the explicit reload says so, not just "no".
    assert re.fullmatch(r"no changes since the last reload \(replaced: a at "
                        r"\d\d:\d\d:\d\d\)", master.call("reload"))
    assert [p["name"] for p in master.status()["programs"]] == ["a"]
