"""The per-master command inbox in Redis: a real master applies `scale` sent from another
process (the dashboard's path and `scale --all/--master`); bad commands change nothing.
And the dashboard as a command program on a port already in use: one line, FATAL, the
master keeps running."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from supervisor_q.fleet import inbox
from tests.helpers import wait_until
from tests.masters import Master

pytestmark = pytest.mark.slow

PROGRAM = """\
queues: [inboxq]
import: [tests.jobmods.basic]
numprocs: 1
startsecs: 0.2
"""


def cli(redis_url: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                           *argv], capture_output=True, text=True, timeout=20)


def test_master_applies_scale_from_its_inbox(short_tmp: Path, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"naps": PROGRAM}) as master:
        master.wait_running("naps", 1)
        master_id = master.status()["master"]["fleet_id"]
        inbox.send(client, master_id, "scale", program="nope", numprocs=2)
        inbox.send(client, master_id, "scale", program="naps", numprocs=3)
        master.wait_running("naps", 3)
        wait_until(lambda: "inbox scale refused: unknown program" in master.tail(80)
                   or "refused" in master.tail(80), message="refusal logged")
        wait_until(lambda: any(m["id"] == master_id for m in _live(redis_url)),
                   message="master in the fleet")
        done = cli(redis_url, "scale", "naps", "2", "--all")
        assert done.returncode == 0 and "sent to 1 master(s)" in done.stdout, done.stderr
        master.wait_running("naps", 2)
        done = cli(redis_url, "scale", "naps", "1", "--master", "no-such-master")
        assert done.returncode == 1 and "no live master" in done.stderr
        assert master.answers()


def _live(redis_url: str) -> list[dict]:
    from supervisor_q.fleet.registry import members

    return [m.as_json() for m in members(redis.Redis.from_url(redis_url))
            if m.state == "alive"]


def test_dashboard_program_on_a_taken_port_goes_fatal(short_tmp: Path, redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dashboard = (f"command: python -m supervisor_q dashboard --bind 127.0.0.1:{port}\n"
                     "startretries: 1\nstartsecs: 4\n")
        with Master(short_tmp, redis_url, {"naps": PROGRAM, "dash": dashboard}) as master:
            wait_until(lambda: master.program("dash")["state"] == "fatal", timeout=40,
                       message="dash FATAL")
            assert "address already in use" in master.tail(100_000)
            assert "Traceback" not in master.tail(100_000)
            assert master.answers() and master.program("naps")["state"] == "running"
