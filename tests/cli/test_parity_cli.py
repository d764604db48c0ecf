"""The CLI's help, global options anywhere, shell completion, and status formatting."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

import pytest

from supervisor_q.cli.main import build_parser
from supervisor_q.cli.master import NOT_RUNNING, _restart_line, _short, format_status


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*path, name))


def test_every_option_of_every_command_has_help() -> None:
    missing = [f"{' '.join(path)} {action.option_strings or action.dest}"
               for path, parser in _commands(build_parser()) for action in parser._actions
               if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
               and not action.help]
    assert missing == []


@pytest.mark.parametrize("argv", [
    ["--socket", "/s", "--log-format", "json", "status"],
    ["status", "--socket", "/s", "--log-format", "json"],
    ["--socket", "/x", "status", "--socket", "/s", "--log-format", "json"],
])
def test_global_options_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.socket, args.log_format, args.redis_url) == ("/s", "json", None)


def test_global_options_after_a_nested_subcommand() -> None:
    args = build_parser().parse_args(["failed", "list", "--redis-url", "redis://h/1"])
    assert args.redis_url == "redis://h/1" and args.socket is None
    assert build_parser().parse_args(["status"]).log_format == "text"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_know_the_commands(shell: str) -> None:
    done = subprocess.run([sys.executable, "-m", "supervisor_q", "completion", shell],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    for word in ("restart-workers", "check-config", "signal", "--redis-url"):
        assert word in done.stdout
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed: syntax not checked")
    checked = subprocess.run([binary, "-n"], input=done.stdout, capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


def _status(kind: str, state: str, pid: int | None, target: int = 1) -> dict:
    process = {"name": "p#1", "pid": pid, "state": state, "uptime": 5, "jobs_done": 0,
               "rss": None, "job": None}
    return {"master": {"restart_signal": None}, "programs": [{
        "name": "p", "kind": kind, "state": state, "paused": False, "target": target,
        "target_reason": "numprocs", "next_transition": None, "processes": [process]}]}


def test_status_text_fatal_is_zero_of_one_and_commands_show_no_jobs() -> None:
    fatal = format_status(_status("command", "fatal", 4242))
    assert "0/1" in fatal and "jobs=" not in fatal and "idle" not in fatal
    running = format_status(_status("worker", "running", 4242))
    assert "1/1" in running and "jobs=0 " in running and running.endswith(" idle")


def test_restart_signal_is_a_local_time_and_an_age() -> None:
    epoch = time.time() - 3 * 3600 - 125
    line = _restart_line(epoch)
    assert line == (f"restart signal {time.strftime('%Y-%m-%d %H:%M:%S %z', time.localtime(epoch))}"
                    " (3h 2m ago)")


@pytest.mark.parametrize(("state", "target", "short"), [
    ("running", 1, False), ("fatal", 1, True), ("starting", 1, True), ("exited", 0, False)])
def test_a_wanted_process_not_running_makes_status_exit_3(state: str, target: int,
                                                          short: bool) -> None:
    assert _short(_status("command", state, 1, target)["programs"][0]) is short
    assert NOT_RUNNING == 3
