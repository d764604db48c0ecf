"""The master as users run it: a real `supervisor-q run` with real forks and signals."""

from __future__ import annotations

import os
import signal
import stat
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
from tests.helpers import wait_until
from tests.masters import Master, results

WORKER = """\
queues: [default]
import: [tests.jobmods.basic]
numprocs: {n}
startsecs: 0.2
"""


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def test_pool_is_kept_at_numprocs_after_children_are_killed(master_factory) -> None:
    with master_factory({"emails": WORKER.format(n=3)}) as master:
        first = master.wait_running("emails", 3)
        for pid in first[:2]:
            os.kill(pid, signal.SIGKILL)
        second = wait_until(lambda: (p := master.wait_running("emails", 3)) and
                            not set(first[:2]) & set(p) and p, timeout=20)
        assert first[2] in second, "the untouched child kept running"
        assert len(master.live_children("emails")) == 3


def test_crash_loop_backs_off_to_fatal_without_a_fork_storm(master_factory) -> None:
    broken = "queues: [default]\nimport: [tests.jobmods.does_not_exist]\nstartretries: 3\n"
    with master_factory({"broken": broken}) as master:
        def fatal() -> bool:
            return master.program("broken")["state"] == "fatal"
        started = time.monotonic()
        wait_until(fatal, timeout=30, message="FATAL")
        elapsed = time.monotonic() - started
        log = master.tail(400)
        assert log.count("-> starting") == 3, "exactly startretries attempts, no fork storm"
        assert elapsed >= 1.0, "backoff delays between attempts"
        assert master.live_children("broken") == []


def test_master_sigkilled_leaves_no_child(master_factory) -> None:
    master = master_factory({"emails": WORKER.format(n=3)}).start()
    pids = master.wait_running("emails", 3)
    master.proc.kill()
    master.proc.wait(10)

    def all_gone() -> bool:
        return not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                       for p in pids)
    wait_until(all_gone, timeout=10, message="children died with the master")


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


SPAWNS_SLEEP = """\
import subprocess
import time

from supervisor_q import job
from tests.jobmods.basic import record


@job(name="tests.spawn_sleep")
def spawn_sleep():
    record(value=subprocess.Popen(["sleep", "600"]).pid)
    time.sleep(600)
"""


def test_master_sigkilled_leaves_no_job_subprocess(master_factory, short_tmp: Path,
                                                   queue) -> None:
    code = short_tmp / "code"
    code.mkdir()
    (code / "spawning_jobs.py").write_text(SPAWNS_SLEEP)
    program = ("queues: [default]\nimport: [spawning_jobs]\nnumprocs: 1\nstartsecs: 0.2\n"
               f"directory: {code}\n")
    master = master_factory({"w": program}).start()
    master.wait_running("w", 1)

    def guardian() -> psutil.Process | None:
        for kid in psutil.Process(master.proc.pid).children():
            try:
                if kid.cmdline()[:1] == ["supervisor-q guardian"] and not _gone(kid):
                    return kid
            except psutil.NoSuchProcess:
                continue
        return None
    # A killed guardian is replaced, and the new one knows the groups spawned before it.
    first = wait_until(guardian, timeout=5, message="a guardian")
    first.kill()
    second = wait_until(lambda: (g := guardian()) and g.pid != first.pid and g, timeout=5,
                        message="a new guardian")
    dispatch("tests.spawn_sleep")
    [sleeper] = [r["value"] for r in wait_until(lambda: results(queue.client), timeout=10)]
    sleeping = psutil.Process(sleeper)
    assert sleeping.cmdline() == ["sleep", "600"]
    master.proc.kill()
    master.proc.wait(10)
    wait_until(lambda: _gone(sleeping), timeout=3,
               message="the job's subprocess died too")
    wait_until(lambda: _gone(second), timeout=3, message="the guardian exited")


def test_graceful_shutdown_lets_the_running_job_finish(master_factory, queue) -> None:
    with master_factory({"w": WORKER.format(n=1)}) as master:
        master.wait_running("w", 1)
        dispatch("tests.sleep", 1.5, "slow")
        wait_until(lambda: results(queue.client), timeout=10)
        master.signal(signal.SIGTERM)
        assert master.wait_exit(30) == 0
    assert [r["phase"] for r in results(queue.client)] == ["start", "end"]
    assert queue.counts("default") == {"ready": 0, "delayed": 0, "reserved": 0, "failed": 0}


def test_job_stuck_in_c_is_killed_soon_after_its_timeout(master_factory, queue) -> None:
    with master_factory({"w": WORKER.format(n=1)}) as master:
        [first_pid] = master.wait_running("w", 1)
        dispatch("tests.stuck_in_c")  # timeout=1, blocks SIGALRM and SIGTERM, spins in C
        wait_until(lambda: results(queue.client), timeout=10)
        started = results(queue.client)[0]["at"]
        wait_until(lambda: queue.failed_records(), timeout=10)
        killed_after = queue.failed_records()[0]["failed_at"] - started
        assert killed_after < 1 + 2, f"killed {killed_after:.2f}s after start (timeout 1s)"
        assert queue.failed_records()[0]["reason"].startswith("timeout")
        assert not psutil.pid_exists(first_pid) or \
            psutil.Process(first_pid).status() == "zombie"
        master.wait_running("w", 1)


def test_job_that_kills_its_worker_counts_attempts_then_fails(master_factory, queue) -> None:
    with master_factory({"w": WORKER.format(n=1) + "tries: 2\n"}) as master:
        master.wait_running("w", 1)
        job_id = dispatch("tests.segfault")
        wait_until(lambda: queue.failed_records(), timeout=20)
        [record] = queue.failed_records()
        assert record["id"] == job_id
        assert record["attempts"] == 2
        assert "killed by signal 11" in record["reason"]
        assert [r["attempts"] for r in results(queue.client)] == [1, 2]


def test_reload_scales_only_the_changed_pool(master_factory) -> None:
    master = master_factory({"a": WORKER.format(n=2), "b": WORKER.format(n=1)}).start()
    a_before, b_before = master.wait_running("a", 2), master.wait_running("b", 1)
    master.write("a", WORKER.format(n=3))  # the master loop notices the edit
    a_after = master.wait_running("a", 3)
    assert set(a_before) <= set(a_after), "existing children of a kept running"
    assert master.pids("b") == b_before, "b untouched"


def test_master_forks_single_threaded_while_running_and_reloading(master_factory) -> None:
    master = master_factory({"a": WORKER.format(n=1)}).start()
    [first] = master.wait_running("a", 1)
    master.write("a", WORKER.format(n=2))  # noticed by the loop itself: no watcher thread
    master.wait_running("a", 2)
    os.kill(first, signal.SIGKILL)  # a replacement forked after the reload
    wait_until(lambda: first not in master.pids("a") and len(master.pids("a")) == 2,
               timeout=20, message="replacement child running")
    assert "forking with" not in master.tail(1000)


def test_invalid_edit_changes_nothing_and_is_reported(master_factory) -> None:
    master = master_factory({"a": WORKER.format(n=2)}).start()
    before = master.wait_running("a", 2)
    master.write("a", "queues: [default]\nnumprocs: -2\n")
    with pytest.raises(Exception, match="numprocs"):
        master.call("reload")
    assert master.pids("a") == before
    assert "numprocs: must be >= 0, got -2" in master.tail(100)


def test_new_file_starts_a_program_and_deleted_file_stops_it(master_factory) -> None:
    master = master_factory({"a": WORKER.format(n=1)}).start()
    master.wait_running("a", 1)
    master.write("b", WORKER.format(n=2))
    master.wait_running("b", 2)
    master.remove("b")
    wait_until(lambda: all(p["name"] != "b" for p in master.status()["programs"]), timeout=20)
    assert master.live_children("b") == []


def test_sighup_reloads_and_ttin_ttou_resize_every_program(master_factory) -> None:
    master = master_factory({"a": WORKER.format(n=1)}).start()
    [child] = master.wait_running("a", 1)
    master.signal(signal.SIGHUP)  # nothing changed: one reload that says so, no child touched
    wait_until(lambda: "config reloaded: no changes" in master.tail(100), timeout=10,
               message="SIGHUP reloaded the config")
    assert master.pids("a") == [child]
    master.signal(signal.SIGTTIN)
    master.wait_running("a", 2)
    master.signal(signal.SIGTTOU)
    master.wait_running("a", 1)


def test_command_program_is_supervised(master_factory, short_tmp: Path) -> None:
    marker = short_tmp / "ticks"
    command = f"""\
        command: sh -c 'echo $$ >> {marker}; exec sleep 60'
        numprocs: 2
        startsecs: 0.2
        stopwaitsecs: 2
        """
    master = master_factory({"sleeper": command}).start()
    pids = master.wait_running("sleeper", 2)
    os.kill(pids[0], signal.SIGKILL)
    wait_until(lambda: len(master.pids("sleeper")) == 2 and pids[0] not in
               master.pids("sleeper"), timeout=20)
    wait_until(lambda: len(marker.read_text().split()) >= 3, timeout=20,
               message="the replacement ran the command")
    assert len(marker.read_text().split()) == 3, (marker.read_text(), master.tail(2000))
    log = master.tail(2000)
    # Each start of a fresh process record reads "new -> starting", not "exited -> starting"
    # (which looked like a crash): the two first starts and the replacement.
    assert log.count("new -> starting") == 3 and "exited -> starting" not in log, log
    master.call("stop", program="sleeper")
    wait_until(lambda: master.pids("sleeper") == [], timeout=20)


def test_control_socket_is_owner_only(master_factory) -> None:
    master = master_factory({"a": WORKER.format(n=1)}).start()
    mode = stat.S_IMODE(master.socket.stat().st_mode)
    assert mode == 0o600


def test_status_json_shape(master_factory, queue) -> None:
    master = master_factory({"emails": WORKER.format(n=1)}).start()
    master.wait_running("emails", 1)
    dispatch("tests.sleep", 2)
    wait_until(lambda: master.program("emails")["processes"][0]["job"], timeout=10)
    program = master.program("emails")
    assert program["target"] == 1 and program["state"] == "running"
    [proc] = program["processes"]
    assert set(proc) >= {"pid", "state", "uptime", "jobs_done", "job", "rss"}
    assert proc["job"]["name"] == "tests.sleep" and proc["job"]["runtime"] >= 0
    assert proc["rss"] > 1_000_000


def test_pause_stops_taking_jobs_and_continue_resumes(master_factory, queue) -> None:
    master = master_factory({"a": WORKER.format(n=1)}).start()
    master.wait_running("a", 1)
    master.call("pause", program="a")
    wait_until(lambda: master.program("a")["paused"], timeout=5)
    dispatch("tests.record", "x")
    # Pausing is asynchronous in the child: confirm over a full idle period that nothing ran.
    time.sleep(1.5)
    assert results(queue.client) == []
    master.call("continue", program="a")
    wait_until(lambda: results(queue.client), timeout=10)


def test_pause_and_continue_leave_command_programs_alone(master_factory, queue) -> None:
    sleeper = "command: sleep 600\nnumprocs: 2\nstartsecs: 0.2\n"
    master = master_factory({"a": WORKER.format(n=1), "cmd": sleeper}).start()
    master.wait_running("a", 1)
    before = master.wait_running("cmd", 2)
    assert master.call("pause") == "paused a"
    assert master.program("a")["paused"] and not master.program("cmd")["paused"]
    assert master.call("continue") == "continued a"
    dispatch("tests.record", "x")  # the worker resumed: time enough for a signal to land
    wait_until(lambda: results(queue.client), timeout=10)
    assert all(psutil.Process(pid).status() != "zombie" for pid in before)
    assert master.pids("cmd") == before
    env = {**os.environ, "SUPERVISOR_Q_SOCKET": str(master.socket)}
    for command in ("pause", "continue"):
        refused = subprocess.run([sys.executable, "-m", "supervisor_q", command, "cmd"],
                                 env=env, capture_output=True, text=True, timeout=30)
        assert refused.returncode != 0
        assert refused.stderr.strip() == (f"supervisor-q {command}: cmd is a command "
                                          f"program; {command} applies to worker and "
                                          "periodic programs only")
    assert master.pids("cmd") == before and not master.program("cmd")["paused"]


def test_restarted_child_runs_the_code_now_on_disk(master_factory, short_tmp: Path,
                                                   queue) -> None:
    pkg = short_tmp / "code"
    pkg.mkdir()
    module = pkg / "versioned_jobs.py"
    module.write_text(_versioned("v1"))
    program = ("queues: [default]\nimport: [versioned_jobs]\nnumprocs: 1\nstartsecs: 0.2\n"
               f"directory: {pkg}\n")
    master = master_factory({"v": program}).start()
    [old] = master.wait_running("v", 1)
    dispatch("tests.versioned")
    wait_until(lambda: results(queue.client), timeout=10)
    module.write_text(_versioned("v2"))
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: master.pids("v") and master.pids("v") != [old], timeout=20)
    dispatch("tests.versioned")
    wait_until(lambda: len(results(queue.client)) == 2, timeout=10)
    assert [r["value"] for r in results(queue.client)] == ["v1", "v2"]


def _versioned(version: str) -> str:
    return ("from supervisor_q import job\nfrom tests.jobmods.basic import record\n\n"
            "@job(name='tests.versioned')\ndef versioned():\n"
            f"    record(value={version!r})\n")


IDLE = {"idle": "queues: [other]\nnumprocs: 0\n"}


def _embedded_server(master: Master) -> psutil.Process:
    """The master's valkey-server (or redis-server) child."""
    return wait_until(lambda: next((p for p in psutil.Process(master.proc.pid).children()
                                    if p.name() in ("valkey-server", "redis-server")), None),
                      timeout=10, message="the embedded server")


def test_embedded_server_dies_with_a_sigkilled_master(short_tmp: Path) -> None:
    master = Master(short_tmp, None, IDLE).start()
    try:
        server = _embedded_server(master)
        master.proc.kill()
        master.proc.wait(10)
        wait_until(lambda: _gone(server), timeout=3, message="the server died with its master")
        master.start()  # the next master gets the data dir (and the lock) at once
        assert _embedded_server(master).pid != server.pid
    finally:
        master.stop()


def test_second_master_refuses_a_data_dir_or_socket_in_use(short_tmp: Path) -> None:
    for name in ("a", "b", "c"):
        (short_tmp / name).mkdir()
    first = Master(short_tmp / "a", None, IDLE).start()
    try:
        server = _embedded_server(first)
        url = f"unix://{short_tmp / 'a' / 'run' / 'redis.sock'}?db=0"
        RedisQueue(connect(url)).client.set("kept", "1")
        same_data = {"SUPERVISOR_Q_DATA_DIR": str(short_tmp / "a" / "data")}
        same_socket = {"SUPERVISOR_Q_RUNTIME_DIR": str(short_tmp / "a" / "run")}
        for name, env, why in (("b", same_data, "is in use by another server"),
                               ("c", same_socket, "another server listens on")):
            second = Master(short_tmp / name, None, IDLE, extra_env=env).start(wait=False)
            try:
                assert second.wait_exit(20) == 1
            finally:
                second.stop()
            [line] = second.log.read_text().splitlines()
            assert line.startswith("supervisor-q run: ") and why in line, line
        assert _embedded_server(first).pid == server.pid and server.is_running()
        assert first.answers()
        assert RedisQueue(connect(url)).client.get("kept") == b"1"
    finally:
        first.stop()


def test_embedded_server_keeps_jobs_across_a_master_restart(short_tmp: Path) -> None:
    master = Master(short_tmp, None, {"idle": "queues: [other]\nnumprocs: 0\n"}).start()
    try:
        url = f"unix://{short_tmp / 'run' / 'redis.sock'}?db=0"
        queue = RedisQueue(connect(url))
        built = payloads.build("tests.noop", "kept", [], {})
        queue.push("kept", built.id, payloads.encode(built))
        master.signal(signal.SIGTERM)
        assert master.wait_exit(30) == 0
        master.start()
        queue = RedisQueue(connect(url))
        assert queue.size("kept") == 1
        assert stat.S_IMODE((short_tmp / "run" / "redis.sock").stat().st_mode) == 0o700
        # Commands on the same machine find the embedded server without a URL.
        env = {k: v for k, v in os.environ.items() if k != "SUPERVISOR_Q_REDIS_URL"}
        env["SUPERVISOR_Q_RUNTIME_DIR"] = str(short_tmp / "run")
        size = subprocess.run([sys.executable, "-m", "supervisor_q", "queue", "size", "kept"],
                              env=env, capture_output=True, text=True, check=True)
        assert size.stdout.strip() == "1"
    finally:
        master.stop()


def test_status_answers_while_a_large_scale_up_is_forking(master_factory) -> None:
    """A legit scale to the cap forks a few children per loop turn: `status` is served in
    between, and the pool still reaches its size; TTIN never goes past the cap."""
    with master_factory({"s": "command: sleep 600\nnumprocs: 1\nstartsecs: 0.2\n"}) as m:
        m.wait_running("s", 1)
        m.call("scale", program="s", numprocs=300)
        began = time.monotonic()
        first = m.program("s")
        assert time.monotonic() - began < 2, "status waited for the scale-up"
        assert first["target"] == 300
        assert len(first["processes"]) < 300, "the status answer came after every fork"
        wait_until(lambda: len(m.pids("s")) == 300, timeout=60,
                   message=f"the pool reached 300; log: {m.tail()}")
        m.call("scale", program="s", numprocs=1000)
        m.signal(signal.SIGTTIN)
        wait_until(lambda: m.program("s")["target"] == 1000, timeout=10)
        time.sleep(0.5)
        assert m.program("s")["target"] == 1000, "TTIN stays within the cap"
        m.call("scale", program="s", numprocs=0)
        wait_until(lambda: not m.pids("s", "stopping") and not m.pids("s"), timeout=60,
                   message="all stopped")
