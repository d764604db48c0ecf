"""A master's worker children report their current job through a shared-memory job slot
and their finished jobs in summary lines (master/jobslots.py, worker/slotreport.py):
real masters, real children, real signals."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest
import redis

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.masters import Master, results
from tests.observe.test_metrics_master import free_port, sample, scrape

WORKER = """\
queues: [default]
import: [tests.jobmods.basic, tests.jobmods.hostile]
numprocs: 1
startsecs: 0.2
"""


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def has_job_slot(pid: int) -> bool:
    """The child maps the master's memfd (worker/jobslot.py names it)."""
    with open(f"/proc/{pid}/maps") as maps:
        return "/memfd:supervisor-q-job" in maps.read()


def running_job(master: Master) -> dict | None:
    [child] = master.program("w")["processes"]
    return child["job"]


def test_the_running_job_shows_in_status_from_the_slot(master_factory, queue) -> None:
    with master_factory({"w": WORKER}) as master:
        [pid] = master.wait_running("w", 1)
        assert has_job_slot(pid)
        job_id = dispatch("tests.sleep", 3, "slow")
        job = wait_until(lambda: running_job(master), timeout=10, message="the job shows")
        assert (job["id"], job["name"], job["queue"]) == (job_id, "tests.sleep", "default")
        assert 0 <= job["runtime"] < 3
        wait_until(lambda: len(results(queue.client)) == 2, timeout=10, message="it ended")
        wait_until(lambda: running_job(master) is None, timeout=2, message="idle again")
        wait_until(lambda: master.program("w")["processes"][0]["jobs_done"] == 1, timeout=2,
                   message="counted from its summary")


def test_a_preloaded_child_uses_the_slot(master_factory, queue) -> None:
    with master_factory({"w": WORKER + "preload: true\n"}) as master:
        [pid] = master.wait_running("w", 1)
        wait_until(lambda: "zygote pid=" in master.tail(200) and "ready" in master.tail(200)
                   and has_job_slot(master.wait_running("w", 1)[0]), timeout=30,
                   message=f"a child forked by the zygote; log: {master.tail()}")
        [pid] = master.wait_running("w", 1)
        assert psutil.Process(pid).ppid() == master.proc.pid
        job_id = dispatch("tests.sleep", 2, "slow")
        job = wait_until(lambda: running_job(master), timeout=10, message="the job shows")
        assert job["id"] == job_id
        assert "supervisor-q w zygote" in " ".join(
            " ".join(p.cmdline()) for p in psutil.Process(master.proc.pid).children())


def test_a_job_past_its_timeout_after_a_burst_is_killed_and_counted_as_timeout(
        short_tmp: Path, redis_url: str, queue: RedisQueue) -> None:
    """Hundreds of fast jobs, then one sleeping past its 1 s timeout: no start line wakes
    the master, the slot tells it within SLOT_POLL; it SIGTERMs and counts a timeout."""
    port = free_port()
    master = Master(short_tmp, redis_url, {"w": WORKER})
    master.write("supervisor-q", f"metrics: {{bind: '127.0.0.1:{port}'}}\n")
    with master:
        [pid] = master.wait_running("w", 1)
        tests.jobmods.basic.noop.dispatch_many([()] * 300, connection=redis_url)
        dispatch("tests.stuck_in_c")  # timeout=1, SIGALRM and SIGTERM blocked, in C
        wait_until(lambda: results(queue.client), timeout=20, message="the long job started")
        started = results(queue.client)[0]["at"]
        wait_until(lambda: queue.failed_records(), timeout=10, message="settled")
        [record] = queue.failed_records()
        assert record["reason"].startswith("timeout"), record
        assert record["failed_at"] - started < 1 + 2, "killed soon after its 1 s timeout"
        assert "passed its timeout: SIGTERM" in master.tail(5000)

        def counted() -> dict | None:
            samples = scrape(port)
            done = sample(samples, "supervisorq_jobs_total", queue="default",
                          job="tests.noop", outcome="done")
            timeout = sample(samples, "supervisorq_jobs_total", queue="default",
                             job="tests.stuck_in_c", outcome="timeout")
            return samples if timeout == 1 and done else None
        samples = wait_until(counted, timeout=10, message=f"counted; {master.tail()}")
        # The noops finished just before the stuck job (not known to be short) are sent
        # before it starts, not kept in the child's tally for its kill to take
        # (worker/ahead.py before_start)
        assert sample(samples, "supervisorq_jobs_total", queue="default", job="tests.noop",
                      outcome="done") == 300
        assert sample(samples, "supervisorq_job_duration_seconds_count", queue="default",
                      job="tests.noop") == 300
        assert pid not in master.wait_running("w", 1)


def test_a_child_killed_mid_job_has_the_job_handed_back(master_factory, queue) -> None:
    with master_factory({"w": WORKER + "tries: 2\n"}) as master:
        [pid] = master.wait_running("w", 1)
        tests.jobmods.basic.noop.dispatch_many([()] * 100)
        job_id = dispatch("tests.sleep", 3, "slow")
        wait_until(lambda: (running_job(master) or {}).get("id") == job_id, timeout=20,
                   message="the long job shows")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: [r["phase"] for r in results(queue.client)].count("end") == 1,
                   timeout=20, message=f"ran again to its end; log: {master.tail()}")
        assert [(r["phase"], r["attempts"]) for r in results(queue.client)] == [
            ("start", 1), ("start", 2), ("end", 2)]
        assert "interrupted (lost" in master.tail(5000)


def blocked_client(client: redis.Redis) -> bool:
    """A client blocked in a command (the worker's idle wait)."""
    return any("b" in c["flags"] for c in client.client_list())


WAITS = {7, 23, 232, 270, 281, 441}  # x86-64 poll, select, epoll_wait, pselect6, epoll_pwait(2)


def stopped_in_its_wait(pid: int) -> bool:
    """SIGSTOP the master; True if it stopped inside its loop's wait (not mid-turn: the
    next turn then begins by reaping), else it is continued and False."""
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: psutil.Process(pid).status() == "stopped", timeout=5)
    with open(f"/proc/{pid}/syscall") as syscall:
        number = syscall.read().split()[0]
    if number.isdigit() and int(number) in WAITS:
        return True
    os.kill(pid, signal.SIGCONT)
    return False


def test_a_child_killed_right_after_its_job_hands_nothing_back(master_factory,
                                                                queue) -> None:
    """The master knows the job (synced), is stopped in its wait, the child finishes the
    job and waits idle, then dies: the master's next turn reaps it first, and its slot's
    last state (idle) decides: no hand-back."""
    with master_factory({"w": WORKER}) as master:
        [pid] = master.wait_running("w", 1)
        job_id = dispatch("tests.sleep", 1, "slow")
        wait_until(lambda: (running_job(master) or {}).get("id") == job_id, timeout=20,
                   message="the job shows")
        wait_until(lambda: stopped_in_its_wait(master.proc.pid), timeout=10)
        try:
            wait_until(lambda: len(results(queue.client)) == 2 and
                       queue.counts("default")["reserved"] == 0 and
                       blocked_client(queue.client), timeout=10, message="idle again")
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: psutil.Process(pid).status() == "zombie", timeout=5)
        finally:
            os.kill(master.proc.pid, signal.SIGCONT)
        wait_until(lambda: pid not in master.wait_running("w", 1), timeout=20)
        log = master.tail(400)
        assert "interrupted" not in log, log
        assert f"pid={pid} killed by signal 9" in log or "killed by signal 9" in log
        assert [r["phase"] for r in results(queue.client)] == ["start", "end"]


def test_hostile_summary_lines_are_logged_and_the_master_keeps_running(master_factory,
                                                                        queue) -> None:
    with master_factory({"w": WORKER}) as master:
        [pid] = master.wait_running("w", 1)
        dispatch("tests.hostile_summaries")
        wait_until(lambda: results(queue.client), timeout=10, message="the job ran")
        wait_until(lambda: "unreadable report" in master.tail(400), timeout=5)
        dispatch("tests.record", "after")
        wait_until(lambda: len(results(queue.client)) == 2, timeout=10,
                   message="the child goes on")
        log = master.tail(5000)
        assert log.count("unreadable report") == 5, log  # GARBLED_LOGGED, then quiet
        assert "Traceback" not in log and "iteration failed" not in log, log
        assert master.pids("w") == [pid]
        wait_until(lambda: master.program("w")["processes"][0]["jobs_done"] == 2, timeout=5)


def slot_fds(pid: int) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if "supervisor-q-job" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                found.append(fd)
        except OSError:
            continue
    return found


def slot_maps(pid: int) -> int:
    with open(f"/proc/{pid}/maps") as maps:
        return maps.read().count("/memfd:supervisor-q-job")


@pytest.mark.parametrize("preload", [False, True])
def test_each_child_maps_its_own_slot_and_no_siblings(master_factory, preload: bool) -> None:
    """The master's maps of its children's slots are not inherited by later forks: a
    child (of any program, any user) could otherwise write its siblings' slots."""
    programs = {"w": WORKER.replace("numprocs: 1", "numprocs: 3")
                + ("preload: true\n" if preload else ""),
                "c": "command: sleep 60\nstartsecs: 0\n"}
    with master_factory(programs) as master:
        pids = wait_until(lambda: (found := master.wait_running("w", 3))
                          and all(slot_maps(p) == 1 for p in found) and found, timeout=30,
                          message=f"3 children with a slot; {master.tail()}")
        assert [slot_maps(pid) for pid in pids] == [1, 1, 1]
        assert [slot_fds(pid) for pid in pids] == [[], [], []], (
            "no fd of a child reaches a slot: a job writing to every fd cannot write its "
            "own job out of it")
        [command] = master.wait_running("c", 1)
        assert slot_maps(command) == 0
