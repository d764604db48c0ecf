"""`restart-workers` restarts the `command:` programs that opt in (`restart_on_deploy`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
