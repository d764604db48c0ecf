"""The shipped systemd unit: hardened (exposure <= 3.5, "OK") and valid.

Runs `systemd-analyze` when it is installed (Debian: `apt-get install systemd`);
skipped with a message otherwise. Neither command needs systemd as PID 1.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "supervisor-q.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd)")
ROOT_CAPS = "CAP_SETUID CAP_SETGID CAP_KILL CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER"


def _local_copy(tmp_path: Path, text: str) -> Path:
    """The unit with ExecStart pointing at this venv's supervisor-q: `verify` checks
    that the binary exists, and /opt/supervisor-q does not on a test machine."""
    exe = Path(sys.executable).parent / "supervisor-q"
    text = text.replace("/opt/supervisor-q/venv/bin/supervisor-q", str(exe))
    path = tmp_path / "supervisor-q.service"
    path.write_text(text)
    return path


def _exposure(unit: Path) -> float:
    result = subprocess.run([ANALYZE, "security", "--offline=true", str(unit)],
                            capture_output=True, text=True, timeout=30)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ANALYZE, "verify", str(unit)],
                          capture_output=True, text=True, timeout=30)


@needs_analyze
def test_unit_exposure_is_ok(tmp_path: Path) -> None:
    assert _exposure(_local_copy(tmp_path, UNIT.read_text())) <= 3.5


@needs_analyze
def test_root_override_for_user_switching_is_ok(tmp_path: Path) -> None:
    """The override the unit documents for `user:` (master as root, a few capabilities)."""
    text = UNIT.read_text()
    text = re.sub(r"(?m)^User=supervisor-q$", "User=", text)
    text = re.sub(r"(?m)^Group=supervisor-q$", "Group=", text)
    text = re.sub(r"(?m)^CapabilityBoundingSet=$", f"CapabilityBoundingSet={ROOT_CAPS}", text)
    assert ROOT_CAPS in UNIT.read_text()  # the comment documents exactly this override
    unit = _local_copy(tmp_path, text)
    assert _exposure(unit) <= 3.5
    assert _verify(unit).returncode == 0


@needs_analyze
def test_unit_verifies_clean(tmp_path: Path) -> None:
    result = _verify(_local_copy(tmp_path, UNIT.read_text()))
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).strip() == ""  # no ignored or unknown line


def test_every_setting_is_commented() -> None:
    """Each [Service] hardening setting sits under a comment that explains it."""
    lines = UNIT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Hardening."))
    for i in range(start, len(lines)):
        line = lines[i]
        if line.startswith("["):
            break
        if not line or line.startswith("#"):
            continue
        before = next(lines[j] for j in range(i - 1, start - 1, -1)
                      if not re.match(r"^[A-Z]\w+=", lines[j]))
        assert before.startswith("#"), f"{line!r} has no comment above it"


README = UNIT.parents[1] / "README.md"


def _readme_ini_blocks() -> list[str]:
    """The ```ini blocks of README's systemd section, in order."""
    text = README.read_text()
    section = text[text.index("## Running under systemd"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```ini\n(.*?)```", section, re.S)


def _verify_with_dropin(tmp_path: Path, dropin: str) -> subprocess.CompletedProcess[str]:
    """`verify` on the unit plus a drop-in, as `systemctl edit` would store it."""
    exe = str(Path(sys.executable).parent / "supervisor-q")
    unit_dir = tmp_path / "units"
    (unit_dir / "supervisor-q.service.d").mkdir(parents=True)
    text = UNIT.read_text().replace("/opt/supervisor-q/venv/bin/supervisor-q", exe)
    (unit_dir / "supervisor-q.service").write_text(text)
    dropin = dropin.replace("/opt/supervisor-q/venv/bin/supervisor-q", exe)
    (unit_dir / "supervisor-q.service.d" / "override.conf").write_text(dropin)
    env = {"PATH": "/usr/bin:/bin", "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}
    return subprocess.run([ANALYZE, "verify", "supervisor-q.service"], capture_output=True,
                          text=True, timeout=30, env=env)


@needs_analyze
def test_readme_dropins_verify(tmp_path: Path) -> None:
    """README's `systemctl edit` drop-ins, literally: the ExecStart= reset line makes
    the override valid; without it systemd refuses the unit."""
    blocks = _readme_ini_blocks()
    assert len(blocks) == 2 and "ExecStart=\nExecStart=" in blocks[0]
    for i, block in enumerate(blocks):
        result = _verify_with_dropin(tmp_path / str(i), block)
        assert result.returncode == 0, result.stderr
        assert (result.stdout + result.stderr).strip() == ""  # no ignored or unknown line
    broken = _verify_with_dropin(tmp_path / "broken", blocks[0].replace("ExecStart=\n", "", 1))
    assert broken.returncode != 0
    assert "more than one ExecStart=" in broken.stderr
