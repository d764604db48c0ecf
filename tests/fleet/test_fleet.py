"""The fleet on one Redis: three real masters (own config, runtime and data dirs), SIGKILL
and a standalone `work` process; `status --all`, dead-master hand-back, queue pauses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
import pytest

from supervisor_q.jobs.registry import dispatch
from tests import workers
from tests.helpers import wait_until
from tests.masters import Master

pytestmark = pytest.mark.slow

LEASE = 6.0  # SUPERVISOR_Q_FLEET_LEASE for these masters (default 15 s)
PROGRAM = """\
queues: [fleetq]
import: [tests.jobmods.fleetjobs]
numprocs: 1
tries: 1
timeout: 60
startsecs: 0.2
"""


def cli(redis_url: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                           *argv], capture_output=True, text=True, timeout=20)


def fleet(redis_url: str) -> list[dict]:
    done = cli(redis_url, "status", "--all", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["masters"]


@contextmanager
def three_masters(tmp: Path, redis_url: str) -> Iterator[list[Master]]:
    env = {"SUPERVISOR_Q_FLEET_LEASE": str(LEASE)}
    with ExitStack() as stack:
        masters = []
        for n in range(3):
            (tmp / f"m{n}").mkdir()
            master = Master(tmp / f"m{n}", redis_url, {"naps": PROGRAM}, extra_env=env)
            masters.append(stack.enter_context(master))
        for master in masters:
            master.wait_running("naps", 1)
        yield masters


def starts(redis_url: str, tag: str) -> list[dict]:
    return workers.tagged(redis_url, "start", tag)


def test_status_all_lists_every_master_and_a_dead_ones_job_runs_elsewhere(
        short_tmp: Path, redis_url: str) -> None:
    with three_masters(short_tmp, redis_url) as masters:
        by_pid = {m.proc.pid: m for m in masters}
        def all_running() -> list[dict] | None:
            found = [m for m in fleet(redis_url) if m["state"] == "alive"]
            running = [m for m in found if m["programs"][0]["processes"][:1] and m[
                "programs"][0]["processes"][0]["state"] == "running"]
            return found if len(running) == 3 else None
        listed = wait_until(all_running, timeout=10, interval=0.2,
                            message="three live masters with a running child each")
        assert {m["pid"] for m in listed} == set(by_pid)
        assert all(m["programs"][0]["name"] == "naps" for m in listed)
        text = cli(redis_url, "status", "--all").stdout
        assert text.count(" alive (host ") == 3 and "naps" in text
        assert text.count(", started 20") == 3 and text.count(" paused queues: none") == 3

        dispatch("fleet.nap", "long", 40, queue="fleetq")
        first = wait_until(lambda: starts(redis_url, "long"), message="the job started")[0]
        victim = next(m for m in masters if first["pid"] in m.pids("naps"))
        victim_id = victim.status()["master"]["fleet_id"]
        wait_until(lambda: any(m["id"] == victim_id and m["programs"][0]["processes"][0]["job"]
                               for m in fleet(redis_url)), timeout=5, interval=0.1,
                   message="the victim's heartbeat names the job")
        killed_at = time.monotonic()
        os.kill(victim.proc.pid, signal.SIGKILL)

        again = wait_until(lambda: len(starts(redis_url, "long")) >= 2 and starts(
            redis_url, "long"), timeout=30, interval=0.1, message="the job ran elsewhere")
        handed_over = time.monotonic() - killed_at
        gone = {m["id"]: m for m in fleet(redis_url) if m["state"] == "gone"}
        assert victim_id in gone
        # which one died stays readable: its host, pid and start
        assert gone[victim_id]["pid"] == victim.proc.pid and gone[victim_id]["host"]
        assert isinstance(gone[victim_id]["started_at"], float)
        assert f"master {victim_id} GONE (host " in cli(redis_url, "status", "--all").stdout
        assert again[1]["attempts"] == first["attempts"] == 1  # no attempt spent
        assert again[1]["pid"] not in (first["pid"],)
        assert handed_over < 30
        print(f"death -> job running elsewhere: {handed_over:.1f}s (lease {LEASE}s)")
        survivors = [m for m in masters if m is not victim]
        assert len([m for m in fleet(redis_url) if m["state"] == "alive"]) == 2
        assert any(again[1]["pid"] in m.pids("naps") for m in survivors)


def titles(masters: list[Master], standalone: subprocess.Popen) -> list[str]:
    """The process titles of every worker: the masters' children and the `work` one
    (a child of its guard)."""
    procs = [p for m in masters for p in m.live_children("naps")]
    procs += psutil.Process(standalone.pid).children()
    found = []
    for proc in procs:
        try:
            found.append(" ".join(proc.cmdline()).strip())
        except psutil.Error:
            found.append("")
    return found


def test_a_queue_pause_reaches_every_master_and_a_standalone_worker(
        short_tmp: Path, redis_url: str) -> None:
    with three_masters(short_tmp, redis_url) as masters, workers.running(
            redis_url, 1, "--import", "tests.jobmods.fleetjobs", queues="fleetq") as [alone]:
        workers.wait_idle(redis_url, 4)
        done = cli(redis_url, "pause", "--queue", "fleetq")
        asked = time.monotonic()  # the pause is in Redis now (the CLI's start-up not counted)
        assert done.returncode == 0 and "paused on every host" in done.stdout
        wait_until(lambda: (found := titles(masters, alone)) and len(found) == 4 and all(
            t.endswith(" paused") for t in found), timeout=5, interval=0.05,
            message="every worker paused")
        reached = time.monotonic() - asked
        print(f"pause reached 4 workers on 3 masters + 1 standalone in {reached:.2f}s")
        assert reached < 2.5  # the promise is 2 s; half a second for a loaded machine
        for i in range(8):
            dispatch("fleet.nap", f"p{i}", 0.3, queue="fleetq")
        time.sleep(1.0)  # a window in which an unpaused worker would take them all
        assert workers.results(redis_url, "start") == []
        wait_until(lambda: all(["fleetq"] == m.get("paused_queues")
                                for m in fleet(redis_url)), timeout=5,
                   message="every master reports the pause")
        text = cli(redis_url, "status", "--all").stdout
        assert text.count(") paused queues: fleetq") == 3, text

        masters[0].stop()  # the pause outlives a master's restart
        masters[0].start().wait_running("naps", 1)
        wait_until(lambda: all(t.endswith(" paused") for t in titles(masters, alone)),
                   timeout=5, message="the restarted master's child is paused too")
        assert workers.results(redis_url, "start") == []

        assert cli(redis_url, "continue", "--queue", "fleetq").returncode == 0
        wait_until(lambda: len(workers.results(redis_url, "end")) == 8, timeout=10,
                   message="the paused jobs ran after continue")
        pids = {r["pid"] for r in workers.results(redis_url, "start")}
        assert len(pids) >= 2  # several hosts' workers took them again
