"""`supervisor-q restart-workers` on real masters: new code everywhere, no job lost or run twice."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.restart import signal_restart
from tests.helpers import wait_until
from tests.masters import Master

JOB_MODULE = '''\
import os, time
from supervisor_q import current_job, job
from supervisor_q.jobs.dispatching import queue_for
import json

VERSION = {version!r}

@job(name="deploy.work")
def work(seconds: float = 0.02) -> None:
    ctx = current_job()
    client = queue_for().client
    client.rpush("events", json.dumps({{"id": ctx.id, "phase": "start", "pid": os.getpid()}}))
    time.sleep(seconds)
    client.rpush("events", json.dumps({{"id": ctx.id, "phase": "end", "pid": os.getpid(),
                                        "version": VERSION}}))
'''


def program(queue: str, code: Path, numprocs: int = 2) -> str:
    return (f"queues: [{queue}]\nimport: [deploy_jobs]\nnumprocs: {numprocs}\n"
            f"startsecs: 0.2\ndirectory: {code}\n")


def events(client: redis.Redis) -> list[dict]:
    return [json.loads(e) for e in client.lrange("events", 0, -1)]


def all_pids(masters: list[Master], names: list[str]) -> set[int]:
    return {pid for m in masters for n in names for pid in m.pids(n)}


@pytest.fixture
def code_dir(short_tmp: Path) -> Path:
    code = short_tmp / "code"
    code.mkdir()
    (code / "deploy_jobs.py").write_text(JOB_MODULE.format(version="v1"))
    return code


def test_restart_signal_replaces_every_child_on_two_masters_without_losing_jobs(
        short_tmp: Path, redis_url: str, code_dir: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    masters = []
    for host in ("a", "b"):
        tmp = short_tmp / host
        tmp.mkdir()
        masters.append(Master(tmp, redis_url, {"mail": program("mail", code_dir),
                                               "img": program("img", code_dir)}).start())
    try:
        for m in masters:
            m.wait_running("mail", 2)
            m.wait_running("img", 2)
        before = all_pids(masters, ["mail", "img"])
        assert len(before) == 8
        ids = [dispatch("deploy.work", queue=q) for _ in range(30) for q in ("mail", "img")]
        (code_dir / "deploy_jobs.py").write_text(JOB_MODULE.format(version="v2"))
        signal_restart(client)

        def all_replaced() -> bool:
            pids = all_pids(masters, ["mail", "img"])
            return len(pids) == 8 and not pids & before
        wait_until(all_replaced, timeout=30, message="every child replaced")
        later = [dispatch("deploy.work", queue=q) for _ in range(10) for q in ("mail", "img")]
        ids += later

        def all_done() -> bool:
            return sum(1 for e in events(client) if e["phase"] == "end") >= len(ids)
        wait_until(all_done, timeout=30, message="every job finished")
    finally:
        for m in masters:
            m.stop()
    seen = events(client)
    starts = collections.Counter(e["id"] for e in seen if e["phase"] == "start")
    ends = {e["id"]: e for e in seen if e["phase"] == "end"}
    assert set(ends) == set(ids), "no job lost"
    assert all(starts[i] == 1 for i in ids), "no job ran twice or was killed and retried"
    assert {ends[i]["version"] for i in later} == {"v2"}, "later jobs ran the new code"
    queue = RedisQueue(connect(redis_url))
    assert queue.failed_records() == []


def test_many_signals_in_a_row_replace_each_child_once(short_tmp: Path, redis_url: str,
                                                        code_dir: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"mail": program("mail", code_dir)}) as master:
        before = set(master.wait_running("mail", 2))
        for _ in range(5):
            signal_restart(client)
        wait_until(lambda: not set(master.pids("mail")) & before
                   and len(master.pids("mail")) == 2, timeout=20)
        replaced = set(master.pids("mail"))
        # Replacements that already saw the newest signal must not restart again: give
        # them two restart-check periods to prove it.
        wait_until(lambda: master.status()["master"]["restart_signal"], timeout=5)
        time.sleep(2.5)
        assert set(master.pids("mail")) == replaced
        assert master.tail(200).count("restart signal)") == 2


def test_status_shows_children_still_on_pre_signal_code(short_tmp: Path, redis_url: str,
                                                        code_dir: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"mail": program("mail", code_dir, 1)}) as master:
        [busy] = master.wait_running("mail", 1)
        dispatch("deploy.work", 3.0, queue="mail")
        wait_until(lambda: events(client), timeout=10)
        signal_restart(client)

        def stale_shown() -> bool:
            status = master.status()
            procs = status["programs"][0]["processes"]
            return status["master"]["restart_signal"] is not None and any(
                p["pid"] == busy and p["pre_restart_code"] for p in procs)
        wait_until(stale_shown, timeout=10)
        wait_until(lambda: master.pids("mail") and busy not in master.pids("mail"), timeout=20)
    assert [e["phase"] for e in events(client)] == ["start", "end"], "the job was not killed"


def test_symlinked_release_switch_is_picked_up(short_tmp: Path, redis_url: str) -> None:
    for release in ("r1", "r2"):
        (short_tmp / release).mkdir()
        (short_tmp / release / "deploy_jobs.py").write_text(JOB_MODULE.format(version=release))
    current = short_tmp / "current"
    current.symlink_to(short_tmp / "r1")
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"mail": program("mail", current, 1)}) as master:
        [old] = master.wait_running("mail", 1)
        dispatch("deploy.work", queue="mail")
        wait_until(lambda: len(events(client)) == 2, timeout=10)
        tmp_link = short_tmp / "current.new"
        tmp_link.symlink_to(short_tmp / "r2")
        tmp_link.replace(current)  # atomic switch, as deploy tools do
        subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                        "restart-workers"], check=True, capture_output=True)
        wait_until(lambda: master.pids("mail") and old not in master.pids("mail"), timeout=20)
        dispatch("deploy.work", queue="mail")
        wait_until(lambda: len(events(client)) == 4, timeout=10)
    versions = [e["version"] for e in events(client) if e["phase"] == "end"]
    assert versions == ["r1", "r2"]
