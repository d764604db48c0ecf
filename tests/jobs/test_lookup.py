"""Job lookup with real `work` processes: every state reached for real, the done records'
retention and cap, the CLI, unknown and hostile ids."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from supervisor_q import job_status
from supervisor_q.jobs.registry import dispatch, signature
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.jobinfo import recent_jobs
from supervisor_q.queue.keys import QueueKeys
from supervisor_q.workflows.batches import batch
from supervisor_q.workflows.chains import Chain
from tests.helpers import wait_until
from tests.masters import Master
from tests.workers import running

MODS = "tests.jobmods.lookupjobs"


def work(url: str, *flags: str):  # noqa: ANN201
    return running(url, 1, "--import", MODS, *flags)


def state_of(url: str, job_id: str) -> str | None:
    found = job_status(job_id, connection=url)
    return found.state if found is not None else None


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", url, "job",
                           *args], capture_output=True, text=True, timeout=30)


def test_states_queued_delayed_running_done_failed_released(redis_url: str,
                                                             tmp_path: Path) -> None:
    queued = dispatch("look.ret", 1, connection=redis_url)
    delayed = dispatch("look.ret", 2, delay=300, connection=redis_url)
    assert state_of(redis_url, queued) == "queued"
    assert state_of(redis_url, delayed) == "delayed"
    flag = tmp_path / "go"
    held = dispatch("look.hold", str(flag), connection=redis_url)
    failed = dispatch("look.boom", connection=redis_url)
    released = dispatch("look.flaky", connection=redis_url)
    with work(redis_url) as [proc]:
        wait_until(lambda: state_of(redis_url, held) == "running", timeout=15)
        run = job_status(held, connection=redis_url)
        assert (run.host, run.pid) == (socket.gethostname(), _worker_pid(proc.pid))
        assert run.runtime is not None and run.runtime >= 0 and run.name == "look.hold"
        flag.touch()
        wait_until(lambda: state_of(redis_url, released) == "released", timeout=15)
        wait_until(lambda: state_of(redis_url, failed) == "failed", timeout=15)
        wait_until(lambda: state_of(redis_url, queued) == "done", timeout=15)
    done = job_status(queued, connection=redis_url)
    assert done.result == {"got": 1} and done.attempts == 1 and done.name == "look.ret"
    assert done.started_at <= done.ended_at and done.dispatched_at <= done.started_at
    boom = job_status(failed, connection=redis_url)
    assert "ValueError: kaput" in boom.exception and boom.ended_at is not None
    again = job_status(released, connection=redis_url)
    assert again.attempts == 1 and again.due_at is not None and again.exceptions == 1
    assert state_of(redis_url, delayed) == "delayed"
    assert state_of(redis_url, held) == "done"


def _worker_pid(guard_pid: int) -> int:
    """`work` runs the worker in a child of its guard process."""
    children = Path(f"/proc/{guard_pid}/task/{guard_pid}/children").read_text().split()
    return int(children[0])


def test_chain_and_batch_membership(redis_url: str) -> None:
    first = Chain([signature("look.ret", "a"), signature("look.plain"),
                   signature("look.ret", "c")]).dispatch(connection=redis_url)
    pending = batch([signature("look.ret", "b1"), signature("look.ret", "b2")], name="lk")
    handle = pending.dispatch(connection=redis_url)
    queued = job_status(first, connection=redis_url)
    assert queued.chain == ("look.plain", "look.ret")
    with work(redis_url):
        wait_until(lambda: state_of(redis_url, first) == "done", timeout=15)
        wait_until(lambda: len(recent_jobs(redis.Redis.from_url(redis_url), state="done")) == 5,
                   timeout=15)
    assert job_status(first, connection=redis_url).chain == ("look.plain", "look.ret")
    members = [s for s in recent_jobs(redis.Redis.from_url(redis_url)) if s.batch]
    assert len(members) == 2 and {m.batch for m in members} == {handle.id}
    assert all(m.result["got"] in ("b1", "b2") for m in members)


def test_results_kept_only_when_asked_and_non_json_is_an_error(redis_url: str) -> None:
    plain = dispatch("look.plain", connection=redis_url)
    odd = dispatch("look.nonjson", connection=redis_url)
    after = dispatch("look.ret", "after", connection=redis_url)
    with work(redis_url):
        wait_until(lambda: state_of(redis_url, after) == "done", timeout=15)
    assert job_status(plain, connection=redis_url).result is None
    bad = job_status(odd, connection=redis_url)
    assert bad.state == "done" and bad.result is None
    assert "not JSON-serialisable" in bad.result_error
    assert job_status(after, connection=redis_url).result == {"got": "after"}


def test_retention_expires_done_records(redis_url: str) -> None:
    ids = [dispatch("look.plain", connection=redis_url) for _ in range(3)]
    with work(redis_url, "--keep-jobs", "1"):
        wait_until(lambda: all(state_of(redis_url, i) == "done" for i in ids), timeout=15)
        wait_until(lambda: all(state_of(redis_url, i) is None for i in ids), timeout=10)
    client = redis.Redis.from_url(redis_url)
    k = QueueKeys("default")
    wait_until(lambda: client.exists(k.recent, k.recent_records) == 0, timeout=10,
               message="an idle queue's done records expire whole")


def test_the_cap_bounds_done_records(redis_url: str) -> None:
    queue = RedisQueue(connect(redis_url))
    ids = [dispatch("look.plain", connection=redis_url) for _ in range(60)]
    with work(redis_url, "--keep-jobs-max", "20", "--stop-when-empty"):
        wait_until(lambda: queue.counts("default")["ready"] == 0, timeout=15)
        wait_until(lambda: state_of(redis_url, ids[-1]) == "done", timeout=15)
    client = queue.client
    k = QueueKeys("default")
    assert client.zcard(k.recent) == 20 and client.hlen(k.recent_records) == 20
    assert state_of(redis_url, ids[0]) is None


def test_the_cap_drops_the_oldest_finished_not_the_soonest_forgotten(redis_url: str) -> None:
    """The trial: 3 records kept 1 h fill a cap of 3; a job finished now with keep 5 s
    is findable at once (the cap pushes out the oldest finished)."""
    old = [dispatch("look.plain", connection=redis_url) for _ in range(3)]
    with work(redis_url, "--keep-jobs", "3600", "--stop-when-empty") as procs:
        assert procs[0].wait(30) == 0
    assert all(state_of(redis_url, i) == "done" for i in old)
    new = dispatch("look.plain", connection=redis_url)
    with work(redis_url, "--keep-jobs", "5", "--keep-jobs-max", "3",
              "--stop-when-empty") as procs:
        assert procs[0].wait(30) == 0
    assert state_of(redis_url, new) == "done"
    # one of the old records made room (they may finish in the same millisecond, so
    # which one is not asserted)
    assert sorted(str(state_of(redis_url, i)) for i in old) == ["None", "done", "done"]


def test_a_failed_job_shows_where_and_when_it_ran(redis_url: str) -> None:
    job_id = dispatch("look.boom", connection=redis_url)
    with work(redis_url) as procs:
        wait_until(lambda: state_of(redis_url, job_id) == "failed", timeout=15)
        found = job_status(job_id, connection=redis_url)
        assert found.pid == _worker_pid(procs[0].pid) and found.host == socket.gethostname()
    assert found.started_at is not None and found.ended_at >= found.started_at
    assert found.runtime is not None and 0 <= found.runtime < 10
    assert found.exceptions == 1
    shown = cli(redis_url, job_id)
    assert f"pid: {found.pid}" in shown.stdout and "started_at:" in shown.stdout, shown.stdout


def test_cli_text_json_unknown_and_hostile_ids(redis_url: str) -> None:
    queue = RedisQueue(connect(redis_url))
    hostile = "\udcff\n\x1b[31mid\u2028\x85x"
    built = payloads.build("look.boom", "default", [], {}, job_id=hostile)
    queue.push("default", hostile, payloads.encode(built))
    ok = dispatch("look.ret", 7, connection=redis_url)
    with work(redis_url):
        wait_until(lambda: state_of(redis_url, ok) == "done", timeout=15)
        wait_until(lambda: state_of(redis_url, hostile) == "failed", timeout=15)
    text = cli(redis_url, ok)
    assert text.returncode == 0 and "state: done" in text.stdout
    assert 'result: {"got": 7}' in text.stdout and "name: look.ret" in text.stdout
    body = json.loads(cli(redis_url, ok, "--json").stdout)
    assert body["state"] == "done" and body["result"] == {"got": 7} and body["id"] == ok
    shown = "\\xff\\n\\x1b[31mid\\u2028\\u0085x"  # as `failed list` shows it (ids.py)
    hostile_out = json.loads(cli(redis_url, shown, "--json").stdout)
    assert hostile_out["state"] == "failed" and hostile_out["id"] == shown
    hostile_text = cli(redis_url, shown)
    assert hostile_text.returncode == 0 and "\x1b" not in hostile_text.stdout
    assert len(hostile_text.stdout.splitlines()) == hostile_text.stdout.count("\n")
    missing = cli(redis_url, "no-such-\n-job")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "no job" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_recent_jobs_lists_running_done_and_failed_newest_first(redis_url: str,
                                                                tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    first = dispatch("look.ret", 1, connection=redis_url)
    boom = dispatch("look.boom", connection=redis_url)
    flag = tmp_path / "go"
    with work(redis_url):
        # held starts after boom ended, not in the same millisecond (their order's tie)
        wait_until(lambda: state_of(redis_url, boom) == "failed", timeout=15)
        held = dispatch("look.hold", str(flag), connection=redis_url)
        wait_until(lambda: state_of(redis_url, held) == "running", timeout=15)
        found = recent_jobs(client)
        assert [s.id for s in found] == [held, boom, first]  # by start, else end
        assert {s.id: s.state for s in found} == {first: "done", boom: "failed",
                                                  held: "running"}
        assert [s.id for s in recent_jobs(client, state="failed")] == [boom]
        assert [s.id for s in recent_jobs(client, queue="default", limit=1,
                                          state="done")] == [first]
        flag.touch()
        wait_until(lambda: state_of(redis_url, held) == "done", timeout=15)
    assert [s.id for s in recent_jobs(client, state="done")] == [held, first]
    with pytest.raises(ValueError):
        recent_jobs(client, state="bogus")


def test_under_a_master_running_pid_is_the_child_and_keep_jobs_applies(
        redis_url: str, short_tmp: Path) -> None:
    program = ("queues: [default]\nimport: [tests.jobmods.lookupjobs]\nstartsecs: 0.2\n"
               "numprocs: 1\nkeep_jobs: 1\nprefetch: 2\n")
    flag = short_tmp / "go"
    held = dispatch("look.hold", str(flag), connection=redis_url)
    after = dispatch("look.plain", connection=redis_url)
    with Master(short_tmp, redis_url, {"look": program}) as master:
        wait_until(lambda: state_of(redis_url, held) == "running", timeout=15)
        [pid] = master.wait_running("look", 1)
        assert job_status(held, connection=redis_url).pid == pid
        flag.touch()
        wait_until(lambda: state_of(redis_url, after) == "done", timeout=15)
        wait_until(lambda: state_of(redis_url, after) is None, timeout=10,
                   message="keep_jobs: 1 forgets the done job after a second")


def test_keep_jobs_keys_are_checked(tmp_path: Path) -> None:
    (tmp_path / "look.yaml").write_text(
        "queues: [default]\nimport: [tests.jobmods.lookupjobs]\nkeep_jobs: -1\n"
        "keep_jobs_max: 0\n")
    checked = subprocess.run([sys.executable, "-m", "supervisor_q", "check-config",
                              str(tmp_path)], capture_output=True, text=True, timeout=30)
    out = checked.stdout + checked.stderr
    assert checked.returncode == 1 and "keep_jobs:" in out and "keep_jobs_max:" in out, out
    assert "Traceback" not in out
