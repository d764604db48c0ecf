"""`supervisor-q work`'s guard after its worker dies by a signal (worker/guard.py,
boot.py): the running job is settled, every other job the dead worker's reservations
held is handed back at once (attempt given back) and a new worker runs them; another
`work` process's reservations on the same queue are never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.fencing import MASTER_ID_ENV
from supervisor_q.queue.keys import QueueKeys
from supervisor_q.worker import boot
from supervisor_q.worker.guard import MAX_QUICK, Death
from supervisor_q.worker.settings import WorkerSettings
from tests import workers
from tests.helpers import wait_until
from tests.worker.test_worker import BASIC, failed, results


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def start(redis_url: str, *flags: str) -> subprocess.Popen:
    """`work --prefetch 4` in its own session (killpg ends the guard and worker alike)."""
    return workers.start(redis_url, "--prefetch", "4", "--tries", "1", "--timeout", "60",
                         *flags, imports=BASIC, new_session=True)


def runs(queue: RedisQueue, value: str, phase: str | None = None) -> list[dict]:
    return [r for r in results(queue) if r.get("value") == value
            and (phase is None or r.get("phase") == phase)]


def held_by(queue: RedisQueue) -> dict[bytes, bytes]:
    """The queue's reservation tokens: job id -> "<holder>|<attempts>"."""
    return queue.client.hgetall(QueueKeys("default").holders)


def busy_worker(redis_url: str, queue: RedisQueue, name: str) -> tuple[subprocess.Popen, int]:
    """A `work` process running a 30 s job with 3 jobs prefetched behind it (its
    reservations: 4); the worker child's pid."""
    dispatch("tests.sleep", 30, f"{name}-long")
    for i in range(3):
        dispatch("tests.record", f"{name}{i}")
    before = queue.counts("default")["reserved"]
    proc = start(redis_url)
    wait_until(lambda: runs(queue, f"{name}-long", "start"), timeout=15)
    wait_until(lambda: queue.counts("default")["reserved"] == before + 4, timeout=5)
    [started] = runs(queue, f"{name}-long", "start")
    return proc, started["pid"]


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def test_sigkilled_worker_prefetched_jobs_run_at_once_on_the_replacement_each_once(
        redis_url: str, queue: RedisQueue) -> None:
    other, _ = busy_worker(redis_url, queue, "b")  # a second `work` on the same queue
    victim, pid = busy_worker(redis_url, queue, "a")
    try:
        others = {job: token for job, token in held_by(queue).items()
                  if not token.decode().split("|")[1].startswith(f"{pid}.")}
        assert len(others) == 4, "the other worker's reservations"
        os.kill(pid, signal.SIGKILL)  # the worker child, not the guard
        # Handed back at once: not after their reservations' expiry (60 s + the margin).
        wait_until(lambda: all(runs(queue, f"a{i}") for i in range(3)), timeout=8,
                   message="the prefetched jobs ran on the replacement")
        assert victim.poll() is None, "the guard lives on"
        [new] = psutil.Process(victim.pid).children()
        assert new.pid != pid
        wait_until(lambda: queue.counts("default")["reserved"] == 4, timeout=5)
        assert held_by(queue) == others, "the other worker's reservations are untouched"
        assert not any(runs(queue, f"b{i}") for i in range(3))
    finally:
        kill_group(victim)
        kill_group(other)
    for i in range(3):
        [ran] = runs(queue, f"a{i}")
        assert ran["pid"] == new.pid and ran["attempts"] == 1, ran  # attempt given back
    [lost] = failed(queue)  # --tries 1: the job it ran is settled (failed), not left
    assert "killed by signal 9" in lost["reason"], lost
    assert len(runs(queue, "a-long", "start")) == 1


def test_a_worker_killed_while_stopping_is_not_replaced_but_its_jobs_are_handed_back(
        redis_url: str, queue: RedisQueue) -> None:
    """TERM to `work` (forwarded: the worker finishes its 30 s job first), then a SIGKILL
    of the worker: no new worker; the guard dies of the signal once its prefetched jobs
    are ready again, attempt given back."""
    proc, pid = busy_worker(redis_url, queue, "a")
    try:
        proc.send_signal(signal.SIGTERM)
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        kill_group(proc)
    # (a fourth ready job: the failed one's callbacks, for a worker of its queue)
    assert queue.counts("default") == {"ready": 4, "delayed": 0, "reserved": 0, "failed": 1}
    _, back = queue.reserve("default", default_timeout=60, count=4)
    prefetched = {payloads.decode(j.payload).args[0]: j.attempts for j in back.jobs
                  if payloads.decode(j.payload).job == "tests.record"}
    assert prefetched == {"a0": 1, "a1": 1, "a2": 1}, "ready again, attempt given back"


def test_a_sigkilled_workers_job_subprocesses_die_before_the_job_is_released(
        redis_url: str, queue: RedisQueue, tmp_path: Path) -> None:
    """The dead worker's process group is SIGKILLed too: its job's `sleep` subprocess does
    not run on beside the job's next attempt."""
    marks = tmp_path / "marks"
    dispatch("fleet.marked", str(marks), 600)
    proc = workers.start(redis_url, "--tries", "2", imports="tests.jobmods.fleetjobs",
                         new_session=True)
    try:
        wait_until(lambda: marks.exists() and "start" in marks.read_text(), timeout=15)
        _, pid, _, _, helper = marks.read_text().split("\n")[0].split()
        os.kill(int(pid), signal.SIGKILL)
        wait_until(lambda: not _alive(int(helper)), timeout=5, message="its subprocess died")
        assert proc.poll() is None
    finally:
        kill_group(proc)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_guard_gives_up_after_quick_deaths_in_a_row(redis_url: str, queue: RedisQueue) -> None:
    """A worker that dies by a signal soon after every start is a crash loop: after
    MAX_QUICK of them the guard dies of the signal, as `work` did before."""
    proc = start(redis_url)
    try:
        dead: list[int] = []

        def new_worker() -> list[psutil.Process]:
            return [c for c in psutil.Process(proc.pid).children() if c.pid not in dead]

        for _ in range(MAX_QUICK):
            [child] = wait_until(new_worker, timeout=10, message="a new worker")
            os.kill(child.pid, signal.SIGKILL)
            dead.append(child.pid)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise AssertionError(proc.stderr.read() if proc.stderr else "") from None
        assert code == -signal.SIGKILL
        said = proc.stderr.read() if proc.stderr else ""
        assert f"{MAX_QUICK} workers in a row were killed" in said, said[-2000:]
    finally:
        kill_group(proc)


def test_a_dead_idle_workers_held_jobs_are_all_handed_back_and_no_one_elses(
        redis_url: str, queue: RedisQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard's settle for an idle worker (no job in the slot): every job held under
    its tag and pid goes back, attempt given back; another guard's worker's, a token-less
    (older version's) reservation and a later worker of the same guard keep theirs."""
    def reserving(tag: str, count: int = 2) -> RedisQueue:
        monkeypatch.setenv(MASTER_ID_ENV, tag)
        mine = RedisQueue(connect(redis_url))
        mine.reserve("default", default_timeout=60, count=count)
        return mine

    for i in range(8):
        dispatch("tests.record", f"j{i}")
    dead = reserving("work:aaaa")
    pid = int(dead.holder().split("|")[1].split(".")[0])
    reserving("work:bbbb")  # another `work` process's worker
    monkeypatch.setattr("supervisor_q.procid._pid", pid + 1)
    reserving("work:aaaa")  # the same guard's next worker
    old = reserving("", count=1)
    [old_id] = [j for j, t in held_by(queue).items() if t.startswith(old.holder().encode())]
    queue.client.hdel(QueueKeys("default").holders, old_id)  # as an older version left it
    pid = int(dead.holder().split("|")[1].split(".")[0])
    settings = WorkerSettings(queues=("default",), tries=1)
    done = boot._settle_dead(settings, queue, "work:aaaa", Death(pid, None, 9, False))
    assert done.startswith("idle: 2 job(s)"), done
    assert queue.counts("default") == {"ready": 3, "delayed": 0, "reserved": 5, "failed": 0}
    assert not any(t.startswith(b"work:aaaa|%d." % pid) for t in held_by(queue).values())
    _, back = queue.reserve("default", default_timeout=60, count=3)
    assert sorted(j.attempts for j in back.jobs) == [1, 1, 1]  # attempt given back


def test_a_job_without_timeout_is_named_in_the_slot() -> None:
    """The slot names a running job that has no timeout (deadline inf), so the guard can
    settle it after a SIGKILL; 0.0 still means no job."""
    import mmap

    from supervisor_q.worker.guard import SLOT_SIZE, SlotReporter, read_slot

    slot = mmap.mmap(-1, SLOT_SIZE)
    reporter = SlotReporter(slot)
    assert read_slot(slot) is None
    reporter.job_started("id-1", "tests.noop", "default", 0, 2)
    job = read_slot(slot)
    assert job is not None
    assert (job.deadline, job.serial, job.queue, job.id, job.attempts, job.name) == (
        float("inf"), 1, "default", "id-1", 2, "tests.noop")
    reporter.job_finished("id-1")
    assert read_slot(slot) is None


def test_a_stop_sent_while_the_new_worker_boots_is_not_lost(
        redis_url: str, queue: RedisQueue) -> None:
    """TERM to `work` just after its worker was SIGKILLed: the guard's new worker gets
    it even while it boots (it starts with the forwarded signals blocked), so `work`
    stops, nothing left reserved, instead of running on (it once did: the signal met
    the guard's handler and wake-up pipe, inherited, and was lost)."""
    dispatch("tests.record", "x")
    proc = workers.start(redis_url, "--rest", "60", imports=BASIC, new_session=True)
    try:
        wait_until(lambda: runs(queue, "x"), timeout=15)
        [child] = psutil.Process(proc.pid).children()
        child.kill()
        time.sleep(0.02)  # not a wait for anything: the TERM lands while the guard
        proc.send_signal(signal.SIGTERM)  # settles the dead worker or forks the new one
        assert proc.wait(10) == 0
    finally:
        kill_group(proc)
    counts = queue.counts("default")  # ready again, or run again by the new worker and acked
    assert counts["reserved"] == 0 and counts["failed"] == 0, counts


# Runs the CLI with an audit hook that writes each process the command starts (subprocess,
# posix_spawn, exec, fork) to the file named by argv[1].
_AUDITED = """
import os, runpy, sys
path = sys.argv.pop(1)
def hook(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork"):
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {event} {str(args)[:200]}\\n")
sys.addaudithook(hook)
sys.argv[0] = "supervisor-q"
runpy.run_module("supervisor_q", run_name="__main__", alter_sys=True)
"""


def test_work_starts_no_process_but_its_worker(redis_url: str, tmp_path: Path) -> None:
    """`work`'s process tree is the guard and its worker only: nothing it imports runs a
    command. croniter's import forked `file -b <python>`, which a watcher of the tree (and
    test_guard_gives_up_after_quick_deaths_in_a_row, which SIGKILLs the guard's children)
    took for the worker."""
    log = tmp_path / "started.txt"
    done = subprocess.run(
        [sys.executable, "-c", _AUDITED, str(log), "--redis-url", redis_url, "work",
         "--queue", "default", "--import", BASIC, "--stop-when-empty", "--quiet"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    started = log.read_text().splitlines()
    assert len(started) == 1 and " os.fork " in started[0], started


def test_an_idle_settle_without_redis_says_so_in_words(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    """The guard's settle of an idle worker (no job) while Redis is away names what it
    could not settle ("its held jobs"), not an empty job id, in one line."""
    import socket

    from supervisor_q.worker import handback

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    dead = RedisQueue(connect(f"redis://127.0.0.1:{port}/0"))
    back = handback.Handback(handback.LostJob("", ""), 0, "idle", "killed by signal 9",
                             "work:aaaa|1.")
    settings = WorkerSettings(queues=("default",))
    assert handback.settle(dead, settings, back) == "left to reservation expiry"
    [line] = [r.getMessage() for r in caplog.records if "cannot settle now" in r.getMessage()]
    assert line.startswith("its held jobs: cannot settle now (ConnectionError"), line
    assert "\n" not in line
