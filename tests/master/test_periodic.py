"""Periodic programs fired by real masters sharing one real Redis (master/periodic.py)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from supervisor_q.ctl.protocol import ControlError
from supervisor_q.queue.jobinfo import job_status
from tests.helpers import stays, wait_until
from tests.masters import Master

FIRED = re.compile(r"supervisor_q\.periodic: (\S+?):(\S+): (due|catch-up|run by hand): "
                   r"job \S+ (\S+) \((?:due (\S+)|now)\) -> dispatched")


def fired(*masters: Master) -> list[tuple[str, str, str, str, str]]:
    """(program, entry, why, job id, due time) of every firing in the masters' logs."""
    return [m.groups() for master in masters
            for m in FIRED.finditer(master.log.read_text(errors="replace"))]


def server_now(client) -> float:  # noqa: ANN001
    seconds, micros = client.time()
    return seconds + micros / 1e6


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_two_masters_fire_each_due_time_once(short_tmp: Path, redis_url: str,
                                             redis_db) -> None:  # noqa: ANN001
    program = """
        periodic:
          - {name: tick, job: tests.noop, every: 2s, queue: ptick, args: [1]}
        """
    masters = []
    for name in ("a", "b"):
        (short_tmp / name).mkdir()
        masters.append(Master(short_tmp / name, redis_url, {"cron": program}))
    client = redis_db.client()
    try:
        for master in masters:
            master.start()
        # the window under test: both masters up through four due times, each wanted once
        wait_until(lambda: client.llen("sq:{ptick}:ready") >= 4, timeout=20,
                   message=f"four jobs; logs: {[m.tail() for m in masters]}")
    finally:
        for master in masters:
            master.stop()
    firings = fired(*masters)
    dues = sorted(epoch(f[4]) for f in firings)
    assert len(dues) == len(set(dues)), f"a due time fired twice: {firings}"
    assert len(dues) >= 4, firings
    assert all(b - a == 2.0 for a, b in zip(dues, dues[1:], strict=False)), dues  # no gap
    assert client.llen("sq:{ptick}:ready") == len(dues)  # one job per due time, no more


@pytest.mark.slow
def test_overlap_false_skips_while_the_last_run_is_running(master_factory, redis_db) -> None:  # noqa: ANN001
    master = master_factory({
        "workers": """
            queues: [pslow]
            import: [tests.jobmods.basic]
            startsecs: 0
            """,
        "cron": """
            periodic:
              - {name: slow, job: tests.sleep, every: 1s, queue: pslow, args: [2.5],
                 overlap: false}
            """}).start()
    client = redis_db.client()
    wait_until(lambda: len(fired(master)) >= 3, timeout=15,
               message=f"three firings; log: {master.tail()}")
    master.stop()
    log = master.log.read_text()
    assert "skipped: the previous run" in log
    runs = [job_status(client, f[3], "pslow") for f in fired(master)]
    assert all(r is not None and r.started_at for r in runs[:-1]), runs
    for before, after in zip(runs, runs[1:], strict=False):  # never two at once
        assert before.ended_at is not None and after.dispatched_at >= before.ended_at, \
            (before, after)


@pytest.mark.slow
def test_catch_up_after_an_outage_fires_one_missed_due_time(master_factory, redis_db) -> None:  # noqa: ANN001
    client = redis_db.client()
    start = int(server_now(client)) + 4
    first, missed = start % 60, [(start + 3) % 60, (start + 5) % 60]
    seconds = ",".join(str(s) for s in sorted([first, *missed]))
    master = master_factory({"cron": f"""
        periodic:
          - {{name: late, job: tests.noop, cron: "{seconds} * * * * *", queue: plate,
             catch_up: true}}
          - {{name: lost, job: tests.noop, cron: "{seconds} * * * * *", queue: plost}}
        """}).start()
    wait_until(lambda: len(fired(master)) == 2, timeout=10,
               message=f"the first due time; log: {master.tail()}")
    master.stop()  # down before the two missed due times
    wait_until(lambda: server_now(client) > start + 5 + 6, timeout=15)  # both > LATE old
    master.start()
    wait_until(lambda: "lost: due time" in master.log.read_text(), timeout=10,
               message=f"the missed due time skipped; log: {master.tail()}")
    time.sleep(1.5)  # one more tick or two: nothing else may fire
    master.stop()
    firings = fired(master)
    late = [f for f in firings if f[1] == "late"]
    assert [f[2] for f in late] == ["due", "catch-up"], firings
    assert epoch(late[1][4]) == start + 5  # the latest missed due time, and only it
    assert [f[2] for f in firings if f[1] == "lost"] == ["due"], firings
    assert client.llen("sq:{plate}:ready") == 2 and client.llen("sq:{plost}:ready") == 1


def cli(master: Master, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--socket",
                           str(master.socket), *args], capture_output=True, text=True,
                          timeout=20)


def test_periodic_list_json_shows_the_next_due_time_and_run_fires(master_factory,
                                                                  redis_db) -> None:  # noqa: ANN001
    master = master_factory({"cron": """
        periodic:
          - {name: hourly, job: tests.noop, every: 1h, queue: phour}
          - {name: daily, job: tests.noop, cron: "0 3 * * *", timezone: Europe/Berlin}
        """}).start()
    client = redis_db.client()
    listed = json.loads(cli(master, "periodic", "list", "--json").stdout)
    now = server_now(client)
    hourly, daily = listed
    assert (hourly["program"], hourly["entry"], hourly["schedule"]) == \
        ("cron", "hourly", "every 1h")
    assert now < epoch(hourly["next_due"]) <= now + 3600
    assert epoch(hourly["next_due"]) % 3600 == 0
    assert now < epoch(daily["next_due"]) <= now + 86400 + 3600
    assert hourly["last_fired"] is None and hourly["firing"] is True

    ran = cli(master, "periodic", "run", "hourly")
    assert ran.returncode == 0 and "dispatched" in ran.stdout, ran
    assert client.llen("sq:{phour}:ready") == 1
    again = master.call("periodic", action="list")[0]  # what `list --json` prints
    assert again["last_outcome"] == "dispatched" and again["last_job_state"] == "queued"
    with pytest.raises(ControlError, match="'nope' matches no periodic entry"):
        master.call("periodic", action="run", name="nope")
    # No queue: and no worker has published tests.noop: skipped, not piled on `default`.
    skipped = cli(master, "periodic", "run", "daily")
    assert "skipped: no worker has registered job tests.noop" in skipped.stdout, skipped
    assert client.llen("sq:{default}:ready") == 0
    # A periodic program has no processes: `scale` is refused, TTIN forks nothing.
    with pytest.raises(ControlError, match="cron is a periodic program: it has no processes"):
        master.call("scale", program="cron", numprocs=3)
    master.signal(signal.SIGTTIN)
    stays(lambda: master.program("cron")["processes"] == [], seconds=1.5)

    master.write("cron", """
        periodic:
          - {name: hourly, job: tests.noop, every: 2h, queue: phour}
          - {name: added, job: tests.noop, every: 1d}
        """)  # a reload applies edits like any program's
    wait_until(lambda: [e["schedule"] for e in master.call("periodic", action="list")]
               == ["every 2h", "every 1d"], timeout=10,
               message=f"the edit applied; log: {master.tail()}")
    status = master.program("cron")
    assert (status["state"], status["entries"], status["kind"]) == ("running", 2, "periodic")
    text = cli(master, "status")
    assert re.search(r"^cron +running +0/0 \(periodic: 2 entries\)$", text.stdout, re.M), text
    master.call("pause", program="cron")
    assert master.call("periodic", action="list")[0]["firing"] is False
    master.call("continue", program="cron")
    master.call("stop", program="cron")
    assert master.program("cron")["state"] == "stopped"
    assert master.call("periodic", action="list")[0]["firing"] is False
    master.call("start", program="cron")
    assert master.call("periodic", action="list")[0]["firing"] is True


def test_a_due_time_is_claimed_once_and_never_an_older_one(redis_db, redis_url) -> None:  # noqa: ANN001
    from supervisor_q.master.periodic import Periodic

    client = redis_db.client()
    one, two = (Periodic(client, redis_url, name) for name in ("a", "b"))
    key = ["sq:periodic:{cron}"]
    assert one.claim(keys=key, args=["tick", "100.0"]) == 1
    assert two.claim(keys=key, args=["tick", "100.0"]) == 0  # the same due time: taken
    assert two.claim(keys=key, args=["tick", "98.0"]) == 0  # an older one: never after
    assert two.claim(keys=key, args=["other", "100.0"]) == 1  # entries are apart
    assert two.claim(keys=key, args=["tick", "102.0"]) == 1
