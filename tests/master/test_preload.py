"""`preload: true` on real masters: children forked from a zygote that imported the code
once; killed children and zygotes, deploys, broken deploys; no job lost or run twice."""

from __future__ import annotations

import collections
import json
import os
import signal
from pathlib import Path

import psutil
import pytest
import redis

from supervisor_q.config.loading import ConfigError, load_config_dir
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.restart import signal_restart
from tests.helpers import stays, wait_until, zombie
from tests.masters import Master

JOB_MODULE = '''\
import json, os, time
from supervisor_q import current_job, job
from supervisor_q.jobs.dispatching import queue_for

with open({imports!r}, "a") as _f:  # one line per process that imports this module
    _f.write(f"{{os.getpid()}}\\n")
VERSION = {version!r}

@job(name="pre.work")
def work(seconds: float = 0.0) -> None:
    client = queue_for().client
    client.rpush("events", json.dumps({{"id": current_job().id, "phase": "start",
                                        "pid": os.getpid()}}))
    print("working in", os.getpid(), flush=True)
    time.sleep(seconds)
    client.rpush("events", json.dumps({{"id": current_job().id, "phase": "end",
                                        "pid": os.getpid(), "version": VERSION,
                                        "stage": os.environ.get("STAGE")}}))
'''


def program(code: Path, numprocs: int = 2, extra: str = "") -> str:
    return (f"queues: [pre]\nimport: [pre_jobs]\nnumprocs: {numprocs}\nstartsecs: 0.2\n"
            f"directory: {code}\npreload: true\ntries: 2\n{extra}")


def write_module(code: Path, version: str) -> None:
    tmp = code / "pre_jobs.tmp"
    tmp.write_text(JOB_MODULE.format(imports=str(code / "imports.log"), version=version))
    tmp.rename(code / "pre_jobs.py")


def importers(code: Path) -> list[int]:
    path = code / "imports.log"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def events(client: redis.Redis) -> list[dict]:
    return [json.loads(e) for e in client.lrange("events", 0, -1)]


def preload(master: Master) -> dict:
    return master.program("pre")["preload"]


def zygote(master: Master) -> int:
    return wait_until(lambda: preload(master)["zygote_pid"], timeout=20,
                      message="a ready zygote")


def run_jobs(client: redis.Redis, count: int, seconds: float = 0.0) -> list[str]:
    ids = [dispatch("pre.work", seconds, queue="pre") for _ in range(count)]
    wait_until(lambda: {e["id"] for e in events(client) if e["phase"] == "end"} >= set(ids),
               timeout=20, message=f"{count} jobs done")
    return ids


def assert_each_ran_once(client: redis.Redis, ids: list[str]) -> dict[str, dict]:
    seen = events(client)
    ends = {e["id"]: e for e in seen if e["phase"] == "end"}
    assert set(ids) <= set(ends), "no job lost"
    ended = collections.Counter(e["id"] for e in seen if e["phase"] == "end")
    assert all(ended[i] == 1 for i in ids), "no job finished twice"
    return ends


@pytest.fixture
def code(short_tmp: Path) -> Path:
    code = short_tmp / "code"
    code.mkdir()
    write_module(code, "v1")
    return code


def test_children_come_from_a_zygote_that_imported_the_code_once(
        short_tmp: Path, redis_url: str, code: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"pre": program(code, 3)}) as master:
        pids = master.wait_running("pre", 3)
        zygote_pid = zygote(master)
        assert importers(code) == [zygote_pid], "imported once, in the zygote only"
        assert psutil.Process(zygote_pid).ppid() == master.proc.pid
        for pid in pids:  # reparented to the master, which reaps and supervises them
            assert psutil.Process(pid).ppid() == master.proc.pid
        ids = run_jobs(client, 12)
        ends = assert_each_ran_once(client, ids)
        assert {e["pid"] for e in ends.values()} <= set(pids)
        # Output is still captured per child (the master's log, tagged by child name).
        wait_until(lambda: "working in" in master.tail(400), timeout=5)
        assert importers(code) == [zygote_pid]


def test_a_killed_child_is_replaced_from_the_zygote_and_its_job_runs_again(
        short_tmp: Path, redis_url: str, code: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"pre": program(code, 2)}) as master:
        before = set(master.wait_running("pre", 2))
        zygote_pid = zygote(master)
        [job_id] = [dispatch("pre.work", 30.0, queue="pre")]
        start = wait_until(lambda: next((e for e in events(client) if e["phase"] == "start"),
                                        None), timeout=10)
        os.kill(start["pid"], signal.SIGKILL)
        wait_until(lambda: len(set(master.pids("pre")) - before) == 1
                   and len(master.pids("pre")) == 2, timeout=15, message="replaced")
        starts = wait_until(lambda: [e for e in events(client) if e["phase"] == "start"
                                     and e["id"] == job_id] if len(
            [e for e in events(client) if e["phase"] == "start"]) >= 2 else None, timeout=20,
            message="the killed job runs again")
        assert len(starts) == 2 and starts[1]["pid"] != start["pid"]
        assert importers(code) == [zygote_pid], "the replacement came from the zygote"


def test_a_killed_zygote_is_started_again_and_the_children_keep_working(
        short_tmp: Path, redis_url: str, code: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"pre": program(code, 2)}) as master:
        pids = master.wait_running("pre", 2)
        first = zygote(master)
        os.kill(first, signal.SIGKILL)
        second = wait_until(lambda: (z := preload(master)["zygote_pid"]) not in (None, first)
                            and z, timeout=20, message="a new zygote")
        assert importers(code) == [first, second]
        assert master.pids("pre") == pids, "the children were not replaced"
        ids = run_jobs(client, 6)
        assert {e["pid"] for e in assert_each_ran_once(client, ids).values()} <= set(pids)
        assert not zombie(first), "the old zygote was not reaped"


def test_restart_workers_loads_new_code_through_a_new_zygote_losing_no_job(
        short_tmp: Path, redis_url: str, code: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"pre": program(code, 2)}) as master:
        before = set(master.wait_running("pre", 2))
        first = zygote(master)
        ids = [dispatch("pre.work", 0.05, queue="pre") for _ in range(20)]
        write_module(code, "v2")
        signal_restart(client)
        second = wait_until(lambda: (z := preload(master)["zygote_pid"]) not in (None, first)
                            and z, timeout=20, message="a new zygote")
        wait_until(lambda: not set(master.pids("pre")) & before
                   and len(master.pids("pre")) == 2, timeout=20, message="children replaced")
        later = run_jobs(client, 6)
        ends = assert_each_ran_once(client, ids + later)
        assert {ends[i]["version"] for i in later} == {"v2"}
        assert importers(code) == [first, second]


def broken_deploy(master: Master, client: redis.Redis, code: Path) -> tuple[list[int], int, str]:
    """Two children running on v1, then a deploy of code that cannot import: their pids,
    the old zygote's pid and the preload error status shows."""
    pids = master.wait_running("pre", 2)
    first = zygote(master)
    (code / "pre_jobs.py").write_text("raise RuntimeError('half-deployed')\n")
    signal_restart(client)
    return pids, first, wait_until(lambda: preload(master)["error"], timeout=20)


def test_a_broken_deploy_keeps_the_old_children_and_status_says_why(
        short_tmp: Path, redis_url: str, code: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"pre": program(code, 2)}) as master:
        pids, first, error = broken_deploy(master, client, code)
        assert "cannot import 'pre_jobs'" in error and "half-deployed" in error
        assert "preload failed" in master.tail(200)
        assert master.pids("pre") == pids and preload(master)["zygote_pid"] == first
        ids = run_jobs(client, 4)
        ends = assert_each_ran_once(client, ids)
        assert {e["version"] for e in ends.values()} == {"v1"}
        write_module(code, "v3")  # the fixed deploy: signalled again, loaded at once
        signal_restart(client)
        wait_until(lambda: not set(master.pids("pre")) & set(pids)
                   and len(master.pids("pre")) == 2, timeout=20, message="children replaced")
        assert preload(master)["error"] is None
        later = run_jobs(client, 4)
        assert {assert_each_ran_once(client, later)[i]["version"] for i in later} == {"v3"}


def test_a_broken_deploy_whose_old_zygote_dies_waits_for_code_that_imports(
        short_tmp: Path, redis_url: str, code: Path) -> None:
    """The user trial's case: during a broken deploy the old zygote is SIGKILLed, then a
    child ends. No plain fork imports the broken code (its retries ended the program
    FATAL): the child waits for a zygote, the other keeps working, the log says so, and
    the fixed deploy brings the pool back."""
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"pre": program(code, 2)}) as master:
        pids, first, _ = broken_deploy(master, client, code)
        tried = len(importers(code))
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: "the last import failed" in master.tail(300), timeout=10,
                   message=f"the zygote's end said; log: {master.tail(20)}")
        os.kill(pids[0], signal.SIGKILL)
        wait_until(lambda: master.pids("pre") == pids[1:], timeout=10)
        wait_until(lambda: "1 of 2 children wait for a zygote that imports" in master.tail(300),
                   timeout=10, message="the wait said")
        ids = run_jobs(client, 2)  # the old child still works
        assert {assert_each_ran_once(client, ids)[i]["version"] for i in ids} == {"v1"}
        # no child was forked to import the broken code: none starting, failed or FATAL
        stays(lambda: [(p["pid"], p["state"]) for p in master.program("pre")["processes"]]
              == [(pids[1], "running")], seconds=3)
        assert len(importers(code)) == tried
        write_module(code, "v3")
        signal_restart(client)
        wait_until(lambda: len(master.pids("pre")) == 2 and pids[1] not in master.pids("pre"),
                   timeout=20, message="the pool back on the fixed code")
        later = run_jobs(client, 4)
        assert {assert_each_ran_once(client, later)[i]["version"] for i in later} == {"v3"}


def test_a_reload_and_a_restart_load_code_through_a_new_zygote(
        short_tmp: Path, redis_url: str, code: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"pre": program(code, 2)}) as master:
        before = set(master.wait_running("pre", 2))
        first = zygote(master)
        master.write("pre", program(code, 2, "environment: {STAGE: two}\n"))
        master.call("reload")
        wait_until(lambda: not set(master.pids("pre")) & before
                   and len(master.pids("pre")) == 2, timeout=20, message="children replaced")
        second = preload(master)["zygote_pid"]
        assert second not in (None, first) and importers(code) == [first, second]
        later = run_jobs(client, 4)
        assert {assert_each_ran_once(client, later)[i]["stage"] for i in later} == {"two"}
        # `restart PROGRAM` also loads the code on disk through a new zygote.
        write_module(code, "v4")
        middle = set(master.pids("pre"))
        master.call("restart", program="pre")
        wait_until(lambda: not set(master.pids("pre")) & middle
                   and len(master.pids("pre")) == 2, timeout=20, message="restarted")
        assert len(importers(code)) == 3
        last = run_jobs(client, 4)
        assert {assert_each_ran_once(client, last)[i]["version"] for i in last} == {"v4"}


def test_preload_is_refused_on_a_command_program(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text("command: sleep 60\npreload: true\n")
    with pytest.raises(ConfigError) as caught:
        load_config_dir(tmp_path)
    lines = str(caught.value).strip().splitlines()
    assert any("preload" in line and "only worker programs" in line for line in lines)
    assert len(lines) == 1
