"""Supervisor's keys and actions on a real master: priority, autostart, groups, globs,
`signal`, `pid`, {process_num}, `user:`/`umask:`, and `status`'s exit code."""

from __future__ import annotations

import grp
import os
import pwd
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q import paths
from supervisor_q.ctl.protocol import ControlError
from supervisor_q.jobs.registry import dispatch
from supervisor_q.master.privileges import CannotSwitch, drop_privileges
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.masters import Master, results

SLEEPER = "command: sleep 600\nstartsecs: 0.2\nstopwaitsecs: 2\n"


def cli(master: Master, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SUPERVISOR_Q_SOCKET": str(master.socket)}
    return subprocess.run([sys.executable, "-m", "supervisor_q", *argv], env=env,
                          capture_output=True, text=True, timeout=30)


def stopped(master: Master, name: str) -> bool:
    program = master.program(name)
    return program["state"] == "stopped" and not any(p["pid"] for p in program["processes"]
                                                     if p["state"] != "exited")


def test_priority_autostart_groups_and_globs(master_factory) -> None:
    # Names sort against the priorities: only `priority` can put z-first's fork first.
    master = master_factory({
        "a-last": SLEEPER + "priority: 900\ngroup: web\n",
        "z-first": SLEEPER + "priority: 1\ngroup: web\n",
        "held": SLEEPER + "autostart: false\ngroup: batch\n",
    }).start()
    [last] = master.wait_running("a-last", 1)
    [first] = master.wait_running("z-first", 1)
    assert first < last, "the lower priority was forked first"
    assert [p["name"] for p in master.status()["programs"]] == ["z-first", "a-last", "held"]
    assert stopped(master, "held") and master.program("held")["target"] == 0

    assert "held: started" in master.call("start", program="held")
    master.wait_running("held", 1)
    assert master.call("stop", program="web:*") == "a-last: stopping; z-first: stopping"
    wait_until(lambda: stopped(master, "a-last") and stopped(master, "z-first"), timeout=10)
    assert master.pids("held"), "GROUP:* left the other group alone"
    master.call("start", program="all")
    master.wait_running("a-last", 1)
    master.wait_running("z-first", 1)
    master.call("stop", program="z-*")
    wait_until(lambda: stopped(master, "z-first"), timeout=10)
    assert master.pids("a-last") and master.pids("held")
    with pytest.raises(ControlError, match="no program matches 'nope\\*'"):
        master.call("start", program="nope*")
    with pytest.raises(ControlError, match="no program matches 'batch:x'"):
        master.call("stop", program="batch:x")


def proxy_and_app(master_factory, short_tmp: Path, app_stops_in: int) -> tuple[Master, Path]:
    """`proxy` (priority 10) and `app` (999): on TERM each appends its name to the
    returned file, app after app_stops_in seconds; started with both traps set."""
    order = short_tmp / "order"

    def trapping(name: str, delay: int) -> str:
        return (f"command: sh -c 'trap \"sleep {delay}; echo {name} >> {order}; exit 0\" TERM; "
                f"touch {short_tmp}/{name}.trapping; while :; do sleep 0.05; done'\n"
                f"startsecs: 0.2\nstopwaitsecs: 10\n")
    master = master_factory({"proxy": trapping("proxy", 0) + "priority: 10\n",
                             "app": trapping("app", app_stops_in) + "priority: 999\n"}).start()
    wait_until(lambda: all((short_tmp / f"{n}.trapping").exists() for n in ("app", "proxy")),
               timeout=15, message="both traps set")
    return master, order


def test_a_graceful_shutdown_stops_priorities_in_phases(master_factory,
                                                       short_tmp: Path) -> None:
    """Supervisor's order: `app` (999) has exited before `proxy` (10) is even signalled."""
    master, order = proxy_and_app(master_factory, short_tmp, app_stops_in=1)
    master.signal(signal.SIGTERM)
    assert master.wait_exit(timeout=30) == 0
    assert order.read_text().split() == ["app", "proxy"], master.tail(100_000)


def test_a_second_term_stops_the_remaining_priorities_at_once(master_factory,
                                                             short_tmp: Path) -> None:
    """`app` takes 3 s to stop; a second TERM does not wait for it to signal `proxy`."""
    master, order = proxy_and_app(master_factory, short_tmp, app_stops_in=3)
    master.signal(signal.SIGTERM)
    wait_until(lambda: "graceful shutdown: stopping" in master.tail(100_000), timeout=10)
    master.signal(signal.SIGTERM)
    assert master.wait_exit(timeout=30) == 0
    assert order.read_text().split() == ["proxy", "app"], master.tail(100_000)
    assert "signalled again, every program stops now" in master.log.read_text()


def test_signal_and_pid(master_factory, short_tmp: Path) -> None:
    marker = short_tmp / "hups"
    trapper = (f"command: sh -c 'trap \"echo hup >> {marker}\" HUP; "
               f"while :; do sleep 0.1; done'\nnumprocs: 2\nstartsecs: 0.2\n")
    master = master_factory({"trap": trapper, "other": SLEEPER}).start()
    pids = master.wait_running("trap", 2)
    other = master.wait_running("other", 1)
    done = cli(master, "pid", "trap")
    assert done.returncode == 0 and sorted(map(int, done.stdout.split())) == pids
    assert int(cli(master, "pid").stdout) == master.proc.pid
    assert sorted(map(int, cli(master, "pid", "all").stdout.split())) == sorted(pids + other)
    sent = cli(master, "signal", "hup", "tra*")
    assert sent.returncode == 0 and sent.stdout.startswith("SIGHUP sent to trap#1")
    wait_until(lambda: marker.exists() and marker.read_text().count("hup") == 2, timeout=10,
               message="each child trapped the HUP")
    assert master.pids("other") == other, "only the target was signalled"
    bad = cli(master, "signal", "NOPE", "trap")  # a usage error: exit 2
    assert bad.returncode == 2 and "unknown signal 'NOPE'" in bad.stderr
    assert "Traceback" not in bad.stderr and master.answers()
    master.call("stop", program="other")
    wait_until(lambda: not master.pids("other"), timeout=10)
    nobody = cli(master, "signal", "HUP", "other")  # nothing running: said, exit 1 as `pid`
    assert nobody.returncode == 1 and "no running process to signal" in nobody.stdout
    missing = cli(master, "stop", "nope*")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "no program matches 'nope*'" in missing.stderr


def test_process_num_and_program_name_are_substituted(master_factory) -> None:
    program = """\
        command: sleep 60{process_num}%(process_num)02d
        numprocs: 2
        startsecs: 0.2
        environment: {SLOT: "%(program_name)s-{process_num}", LITERAL: "100%%"}
        """
    master = master_factory({"nums": program}).start()
    pids = master.wait_running("nums", 2)
    procs = [psutil.Process(pid) for pid in pids]
    wait_until(lambda: all(p.cmdline()[:1] == ["sleep"] for p in procs), timeout=10,
               message="both children exec'd sleep")
    seen = {}
    for proc in procs:
        env = proc.environ()
        seen[env.get("SLOT")] = (proc.cmdline(), env.get("LITERAL"))
    assert seen == {"nums-1": (["sleep", "60101"], "100%"),
                    "nums-2": (["sleep", "60202"], "100%")}


def test_numprocs_start_numbers_process_num_as_supervisor_does(master_factory) -> None:
    """`numprocs_start: 0` (what import-supervisord writes): nums#1 gets process_num 0."""
    program = "command: sleep 60%(process_num)02d\nnumprocs: 2\nstartsecs: 0.2\n" \
              "numprocs_start: 0\n"
    master = master_factory({"nums": program}).start()
    procs = [psutil.Process(pid) for pid in master.wait_running("nums", 2)]
    wait_until(lambda: all(p.cmdline()[:1] == ["sleep"] for p in procs), timeout=10)
    assert sorted(p.cmdline()[1] for p in procs) == ["6000", "6001"]


def test_status_exits_3_with_a_fatal_program(master_factory) -> None:
    master = master_factory({"ok": SLEEPER}).start()
    master.wait_running("ok", 1)
    assert cli(master, "status").returncode == 0
    master.write("broken", "command: 'false'\nstartretries: 1\nstartsecs: 1\n")
    master.call("reload")
    wait_until(lambda: master.program("broken")["state"] == "fatal", timeout=15)
    done = cli(master, "status")
    assert done.returncode == 3, done.stdout + done.stderr
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("broken"))
    assert " 0/1 " in line and "fatal" in line
    assert "jobs=" not in done.stdout, "command programs show no job count"
    master.call("stop", program="broken")
    wait_until(lambda: cli(master, "status").returncode == 0, timeout=10,
               message="a stopped program is not wanted")


@pytest.mark.skipif(os.geteuid() != 0, reason="user: needs the master to run as root "
                    "(CI runs as root)")
def test_user_and_umask_drop_privileges(short_tmp: Path) -> None:
    """Command and worker children run as nobody; the worker reaches the embedded Redis
    through `run --socket-group` (README's recipe) and runs a job."""
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    os.chmod(short_tmp, 0o711)  # nobody may pass through to the runtime dir's socket
    worker = "queues: [default]\nimport: [tests.jobmods.basic]\nstartsecs: 0.2\nuser: nobody\n"
    master = Master(short_tmp, None, {"low": SLEEPER + "user: nobody\numask: '027'\n",
                                      "work": worker}, run_args=["--socket-group", group])
    try:
        master.start()
        [worker_pid] = master.wait_running("work", 1)  # imported its modules, reached Redis
        assert set(psutil.Process(worker_pid).uids()) == {nobody.pw_uid}
        url = f"unix://{paths.embedded_redis_socket(short_tmp / 'run')}"
        queue = RedisQueue(connect(url))
        dispatch("tests.record", "as-nobody", connection=url)
        wait_until(lambda: results(queue.client), timeout=10,
                   message="nobody's worker ran a job")
        [pid] = master.wait_running("low", 1)
        proc = psutil.Process(pid)
        assert set(proc.uids()) == {nobody.pw_uid} and set(proc.gids()) == {nobody.pw_gid}
        status = Path(f"/proc/{pid}/status").read_text()
        assert "Umask:\t0027" in status
        groups = next(ln for ln in status.splitlines() if ln.startswith("Groups:")).split()[1:]
        assert "0" not in groups, "root's supplementary groups were dropped"
    finally:
        master.stop()


def test_a_user_switch_that_cannot_happen_is_one_clear_line() -> None:
    """Not root (a real forked child that dropped to nobody, when the suite is root): the
    one line the child writes on stderr before exiting."""
    other = "daemon" if os.geteuid() != pwd.getpwnam("daemon").pw_uid else "nobody"
    if os.geteuid() == 0:  # drop to nobody first in a real forked child, then try
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.setuid(pwd.getpwnam("nobody").pw_uid)
            try:
                drop_privileges(other)
                os.write(write, b"switched")
            except CannotSwitch as exc:
                os.write(write, str(exc).encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        message = os.read(read, 4096).decode()
        os.close(read)
    else:
        with pytest.raises(CannotSwitch) as caught:
            drop_privileges(other)
        message = str(caught.value)
    assert message.startswith(f"cannot run as user {other!r}: the master runs as ")
    assert message.endswith(", not root (only root can switch users)")
    with pytest.raises(CannotSwitch, match="no such user"):
        drop_privileges("999999")


def test_signal_by_name_then_the_master_replaces_the_child(master_factory) -> None:
    master = master_factory({"s": SLEEPER}).start()
    [pid] = master.wait_running("s", 1)
    assert master.call("signal", signal="TERM", program="s") == f"SIGTERM sent to s#1 ({pid})"
    def gone() -> bool:  # reaped between the two questions counts as gone too
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(gone, timeout=10)
    wait_until(lambda: master.pids("s") and master.pids("s") != [pid], timeout=15)


def test_a_missing_directory_is_one_line_and_the_program_goes_fatal(master_factory) -> None:
    master = master_factory({"lost": "command: sleep 60\ndirectory: /nonexistent-sq-dir\n"
                                     "startretries: 1\nstartsecs: 1\n"}).start()
    wait_until(lambda: master.program("lost")["state"] == "fatal", timeout=15)
    log = master.tail()
    assert "lost#1: cannot enter directory '/nonexistent-sq-dir': No such file or directory" in log
    assert "Traceback" not in log, log


def test_a_replaced_process_keeps_its_slot(master_factory) -> None:
    """`{process_num}` names ports and log files: a process killed and replaced comes
    back under its own number (it came back as #3 of 2)."""
    master = master_factory({"two": SLEEPER + "numprocs: 2\n"}).start()
    first, _ = master.wait_running("two", 2)
    os.kill(first, 9)
    wait_until(lambda: first not in master.pids("two") and len(master.pids("two")) == 2,
               timeout=15, message="the killed process replaced")
    names = sorted(p["name"] for p in master.program("two")["processes"])
    assert names == ["two#1", "two#2"], names


def test_restart_of_a_stopped_program_says_it_starts_and_a_clean_exit_is_not_a_request(
        master_factory, short_tmp: Path) -> None:
    once = "command: sh -c 'sleep 0.3; exit 0'\nstartsecs: 0.1\nautorestart: false\n"
    master = master_factory({"held": SLEEPER + "autostart: false\n", "once": once}).start()
    assert master.call("restart", program="held") == "held: starting"
    master.wait_running("held", 1)
    assert master.call("restart", program="held") == (
        "held: restarting children after their current job")
    def exit_line() -> str | None:
        return next((x for x in master.tail(100_000).splitlines()
                     if "once#1" in x and "running -> exited" in x), None)
    line = wait_until(exit_line, timeout=10, message="once#1 to exit")
    assert "(exited with 0)" in line and "on request" not in line, line
