"""The systemd unit: its key settings, and `systemd-analyze verify` when available."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent.parent / "systemd" / "supervisor-q.service"
# Messages systemd prints for a unit it only partly understands (it then
# ignores the line and still exits 0, so the exit status alone proves nothing).
PROBLEM = re.compile(r"unknown|ignoring|invalid|failed to parse|not allowed|deprecated",
                     re.IGNORECASE)


def _parse(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    return parser


def test_key_settings() -> None:
    unit = _parse(UNIT.read_text())
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": ("/opt/supervisor-q/venv/bin/supervisor-q run"
                      " --config /etc/supervisor-q/conf.d"),
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "KillMode": "mixed",
        "KillSignal": "SIGTERM",
        "Restart": "on-failure",
        "RestartSec": "2",
        "WatchdogSec": "30",
        "User": "supervisor-q",
        "Group": "supervisor-q",
        "RuntimeDirectory": "supervisor-q",
        "RuntimeDirectoryMode": "0700",
        "StateDirectory": "supervisor-q",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectSystem": "strict",
        "OOMPolicy": "continue",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_stop_timeout_leaves_room_for_the_default_drain() -> None:
    service = _parse(UNIT.read_text())["Service"]
    default_timeout, grace = 60, 10  # config defaults: stopwaitsecs = timeout + grace
    assert int(service["TimeoutStopSec"]) > default_timeout + grace
    # The watchdog must allow several loop iterations at half its interval.
    assert int(service["WatchdogSec"]) >= 10


def test_no_hardening_that_breaks_forking_workers() -> None:
    service = _parse(UNIT.read_text())["Service"]
    # MemoryDenyWriteExecute breaks cffi/ctypes callbacks and JITs in jobs; PrivateUsers
    # hides the socket group; a read-only or hidden home would break code living there.
    for key in ("MemoryDenyWriteExecute", "PrivateUsers"):
        assert key not in service, key
    assert service.get("ProtectHome") in (None, "read-only")
    # The filter must keep fork/exec, signals, process groups and setuid (`user:`):
    # @system-service includes @process, @signal and @setuid.
    assert service.get("SystemCallFilter") == "@system-service"
    # RestrictNamespaces blocks clone() with CLONE_NEW* only; a plain fork is unaffected.
    assert service.get("KillMode") != "control-group"  # would TERM children behind our back


def _verify(unit_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not on PATH")
def test_systemd_analyze_verify(short_tmp: Path) -> None:
    # A trivially valid unit first: if even that fails, this machine cannot verify units.
    control = short_tmp / "sq-control.service"
    control.write_text("[Service]\nType=simple\nExecStart=/bin/true\n")
    baseline = _verify(control)
    if baseline.returncode != 0 or baseline.stderr.strip():
        pytest.skip(f"systemd-analyze verify unusable here: {baseline.stderr.strip()[:200]}")

    # verify checks that ExecStart exists; point it at a real binary, keep everything else.
    text = UNIT.read_text()
    patched, count = re.subn(r"^ExecStart=\S+", "ExecStart=/bin/true", text, flags=re.MULTILINE)
    assert count == 1
    copy = short_tmp / "supervisor-q.service"
    copy.write_text(patched)
    result = _verify(copy)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    problems = [line for line in output.splitlines() if PROBLEM.search(line)]
    assert problems == []
    assert output == ""


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not on PATH")
def test_problem_pattern_catches_unknown_keys(short_tmp: Path) -> None:
    # Guards the guard: a misspelled key must show up as a problem line.
    bad = short_tmp / "sq-bad.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nKillMod=mixed\n[Srvice]\nType=notify\n")
    result = _verify(bad)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if PROBLEM.search(line)]
    if not lines and result.returncode != 0:
        pytest.skip("systemd-analyze verify unusable here")
    assert any("KillMod" in line for line in lines)
    assert any("Srvice" in line for line in lines)
