"""The master settles a reaped child's job only while that child's reservation holds
it: a job a fleet claim handed back (attempt given back, so the next holder's attempt
number equals the dead child's) and another worker reserved is left to that worker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis as redis_py

from supervisor_q.config.loading import load_program_file
from supervisor_q.jobs.registry import dispatch
from supervisor_q.master.handbacks import Handbacks
from supervisor_q.master.process import ChildProcess
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.faults import Gate
from supervisor_q.queue.fencing import MASTER_ID_ENV
from supervisor_q.queue.keys import QueueKeys
from supervisor_q.worker.handback import Handback, LostJob
from tests.helpers import wait_until
from tests.masters import results
from tests.queue.test_fencing import push, worker_of

OLD, NEW = "hostA:10:aaaa", "hostB:20:bbbb"


def _reaped_child(queue: RedisQueue, master_id: str) -> ChildProcess:
    """The master's record of the child that held the queue's reservations: forked
    under master_id with the pid the queue's holder names (this test process's)."""
    child = ChildProcess("w", 1)
    child.spawned(int(queue.holder().split("|")[1].split(".")[0]), 1, None, 0.0)
    assert child.master_id == master_id
    return child


def _settle(tmp_path: Path, redis_url: str, child: ChildProcess, job_id: str) -> None:
    (tmp_path / "w.yaml").write_text("queues: [fq]\nimport: [tests.jobmods.fleetjobs]\n"
                                     "tries: 1\n")
    program = load_program_file(tmp_path / "w.yaml")
    master = Handbacks(RedisQueue(connect(redis_url)), Gate())
    back = Handback(LostJob(job_id, "fq", "tests.noop"), 1, "lost", "killed by signal 9")
    master.reaped(child, program, back, signal.SIGKILL)  # raw waitpid status of a KILL
    assert not master.kept


def test_a_handed_back_job_another_worker_holds_is_not_failed_by_the_master(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = worker_of(redis_url, OLD, monkeypatch)
    child = _reaped_child(dead, OLD)
    other = worker_of(redis_url, NEW, monkeypatch)
    job_id = push(dead)
    [mine] = dead.reserve("fq", default_timeout=60)[1].jobs
    assert dead.hand_back_held(f"{OLD}|") == 1  # the claim: attempt given back
    [theirs] = other.reserve("fq", default_timeout=60)[1].jobs
    assert theirs.attempts == mine.attempts == 1
    _settle(tmp_path, redis_url, child, job_id)  # tries: 1 would fail it
    assert other.counts("fq") == {"ready": 0, "delayed": 0, "reserved": 1, "failed": 0}
    assert other.ack("fq", job_id) == 1  # still the other worker's: its ack counts


def test_the_dead_childs_own_reservation_is_still_settled(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = worker_of(redis_url, OLD, monkeypatch)
    child = _reaped_child(dead, OLD)
    job_id = push(dead)
    dead.reserve("fq", default_timeout=60)
    monkeypatch.setenv(MASTER_ID_ENV, NEW)  # the master rejoined under a new id since
    _settle(tmp_path, redis_url, child, job_id)
    counts = dead.counts("fq")  # (a ready one: its failure callbacks, for a worker)
    assert counts["reserved"] == 0 and counts["failed"] == 1, counts
    assert not dead.client.hexists(QueueKeys("fq").holders, job_id)


def _reap(tmp_path: Path, redis_url: str, child: ChildProcess, back: Handback | None) -> None:
    (tmp_path / "w.yaml").write_text("queues: [fq]\nimport: [tests.jobmods.fleetjobs]\n"
                                     "tries: 1\n")
    master = Handbacks(RedisQueue(connect(redis_url)), Gate())
    master.reaped(child, load_program_file(tmp_path / "w.yaml"), back, signal.SIGKILL)
    assert not master.kept


def test_a_killed_childs_unstarted_jobs_go_back_at_once_attempt_given_back(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILLed with one job running and three prefetched: the running one is settled
    (tries: 1 fails it), the three are ready again at once, their attempt given back;
    another child's reservation is not touched."""
    dead = worker_of(redis_url, OLD, monkeypatch)
    child = _reaped_child(dead, OLD)
    other = worker_of(redis_url, NEW, monkeypatch)
    ids = [push(dead) for _ in range(5)]
    running, *prefetched = dead.reserve("fq", default_timeout=60, count=4)[1].jobs
    [theirs] = other.reserve("fq", default_timeout=60)[1].jobs
    back = Handback(LostJob(running.id, "fq", "tests.noop"), 1, "lost", "killed by signal 9")
    _reap(tmp_path, redis_url, child, back)
    counts = other.counts("fq")
    assert (counts["reserved"], counts["failed"]) == (1, 1)  # theirs; the running one
    ready = {x.decode() for x in other.client.lrange(QueueKeys("fq").ready, 0, -1)}
    assert {j.id for j in prefetched} <= ready, "the prefetched ones are ready at once"
    attempts = other.client.hmget(QueueKeys("fq").attempts, [j.id for j in prefetched])
    assert [int(a or 0) for a in attempts] == [0, 0, 0], "their attempt was given back"
    assert theirs.id == ids[4] and other.ack("fq", theirs.id) == 1


def test_a_child_killed_between_jobs_hands_back_what_it_held(
        tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = worker_of(redis_url, OLD, monkeypatch)
    child = _reaped_child(dead, OLD)
    for _ in range(2):
        push(dead)
    assert len(dead.reserve("fq", default_timeout=60, count=2)[1].jobs) == 2
    _reap(tmp_path, redis_url, child, None)
    assert dead.counts("fq") == {"ready": 2, "delayed": 0, "reserved": 0, "failed": 0}


def test_a_sigkilled_child_s_prefetched_jobs_run_again_at_once(master_factory,
                                                                redis_url: str) -> None:
    """A real master and child: the child runs a long job with three prefetched; SIGKILL.
    The three run on its replacement within seconds, not after their reservations' 60 s
    timeout plus margin, and each once."""
    program = ("queues: [default]\nimport: [tests.jobmods.basic]\nnumprocs: 1\n"
               "startsecs: 0.2\nprefetch: 4\ntries: 1\ntimeout: 60\n")
    dispatch("tests.sleep", 30, "long", connection=redis_url)
    for i in range(3):
        dispatch("tests.record", f"quick-{i}", connection=redis_url)
    client = redis_py.Redis.from_url(redis_url)
    with master_factory({"pf": program}) as master:
        [pid] = master.wait_running("pf", 1)
        wait_until(lambda: any(r.get("value") == "long" for r in results(client)), timeout=15)
        assert not [r for r in results(client) if str(r.get("value")).startswith("quick")]
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: len([r for r in results(client)
                                if str(r.get("value")).startswith("quick")]) == 3,
                   timeout=20, message="the prefetched jobs ran on the replacement")
        assert time.monotonic() - killed_at < 20
        quick = sorted(r["value"] for r in results(client)
                       if str(r.get("value")).startswith("quick"))
        assert quick == ["quick-0", "quick-1", "quick-2"], "each once"
