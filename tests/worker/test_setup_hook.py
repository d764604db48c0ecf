"""The `setup:` hook (issue 14): called in each child before `import:`; a failing one is
reported like a broken import (one line, FATAL after startretries, the master runs on);
check-config calls it before its import check; a malformed one is refused at load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_until

SETTINGS = "tests.contrib.djangoapp.settings"


def check_config(confd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "check-config", str(confd)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_a_failing_setup_hook_makes_the_program_fatal_not_the_master(master_factory) -> None:
    broken = "queues: [default]\nsetup: tests.jobmods.basic:no_such_function\n" \
             "import: [tests.jobmods.basic]\nstartretries: 2\nstartsecs: 0.2\n"
    good = "queues: [default]\nimport: [tests.jobmods.basic]\nstartsecs: 0.2\n"
    with master_factory({"broken": broken, "good": good}) as master:
        wait_until(lambda: master.program("broken")["state"] == "fatal", timeout=30,
                   message="FATAL")
        master.wait_running("good", 1)
        log = master.tail(400)
    lines = [ln for ln in log.splitlines() if "setup 'tests.jobmods.basic:no_such_function'"
             " failed: AttributeError" in ln]
    assert len(lines) == 2, log  # one line per attempt (startretries: 2)
    assert "Traceback" not in log


def test_check_config_runs_the_setup_hook_before_importing(short_tmp: Path) -> None:
    pytest.importorskip("django")
    confd = short_tmp / "conf.d"
    confd.mkdir()
    env = f"environment: {{DJANGO_SETTINGS_MODULE: {SETTINGS}}}\n"
    (confd / "nosetup.yaml").write_text(
        "queues: [q]\nimport: [tests.contrib.djangoapp.jobs]\n" + env)
    (confd / "badsetup.yaml").write_text(
        "queues: [q]\nimport: [tests.contrib.djangoapp.jobs]\nsetup: nosuch.mod:setup\n")
    result = check_config(confd)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{confd}/badsetup.yaml: setup: 'nosuch.mod:setup' failed: ModuleNotFoundError: "
        "No module named 'nosuch'",
        f"{confd}/nosetup.yaml: import: cannot import 'tests.contrib.djangoapp.jobs': "
        "AppRegistryNotReady: Apps aren't loaded yet.",
    ]
    (confd / "badsetup.yaml").unlink()
    (confd / "nosetup.yaml").write_text(
        "queues: [q]\nimport: [tests.contrib.djangoapp.jobs]\nsetup: django:setup\n" + env)
    result = check_config(confd)
    assert (result.returncode, result.stdout, result.stderr) == (0, "nosetup: ok (worker)\n", "")


def test_a_malformed_setup_hook_is_refused_in_one_line(short_tmp: Path) -> None:
    confd = short_tmp / "conf.d"
    confd.mkdir()
    (confd / "a.yaml").write_text("queues: [q]\nsetup: django.setup\n")
    result = check_config(confd)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and "setup" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
