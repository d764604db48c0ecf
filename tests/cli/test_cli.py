"""The real `supervisor-q` command under hostile input and locked-down runtime dirs.

Every command runs as a user would run it: `python -m supervisor_q` in a subprocess.
Tests about permissions need root to set them up; the command itself then runs without
the capabilities that let root ignore file modes (or as another uid), as a non-root user
would.
"""

from __future__ import annotations

import ctypes
import grp
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor_q.queue.keys import QueueKeys
from tests.helpers import wait_until
from tests.masters import Master

NOBODY = 65534
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to give a dir to another uid")


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any supervisor-q location, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SUPERVISOR_Q_") and k not in ("RUNTIME_DIRECTORY",
                                                              "XDG_RUNTIME_DIR")}
    return {**env, **extra}


def drop_dac_capabilities() -> None:
    """In the child before exec: root loses the right to ignore file modes, so a dir of
    another uid at 0700 is as closed to it as to any other user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def cli(*argv: str, env: dict[str, str] | None = None, unprivileged: bool = False,
        timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor_q", *argv], env=env if env is not None
        else clean_env(), capture_output=True, text=True, timeout=timeout,
        preexec_fn=drop_dac_capabilities if unprivileged else None)


def assert_one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    err = result.stderr
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert result.returncode == code, (result.returncode, err)
    return err.strip()


@pytest.mark.parametrize("argv, says", [
    (["--redis-url", "localhost:6379", "failed", "list"], "bad Redis URL 'localhost:6379'"),
    (["--redis-url", "localhost:6379", "dispatch", "tests.noop"], "bad Redis URL"),
    (["--redis-url", "redis://127.0.0.1:port/0", "queue", "size", "default"],
     "bad Redis URL"),
    (["--redis-url", "localhost:6379", "restart-workers"], "bad Redis URL"),
    (["--redis-url", "localhost:6379", "batches", "list"], "bad Redis URL"),
    (["dispatch", "tests.noop", "--args", "[1,"], "must be JSON"),
    (["dispatch", "tests.noop", "--kwargs", "[1]"], "--kwargs a JSON object"),
    (["dispatch", "tests.noop", "--bogus"], "unrecognized arguments: --bogus"),
    (["scale", "web", "many"], "'many' is not a whole number from 0 to 1000"),
    # issue 9's user trial: each of these was accepted, a traceback, or a doubled prefix
    (["scale", "w", "99999999999999999999"], "is not a whole number from 0 to 1000"),
    (["scale", "w", "1001"], "'1001' is not a whole number from 0 to 1000"),
    (["scale", "w", "-1"], "'-1' is not a whole number from 0 to 1000"),
    (["dispatch", "tests.noop", "--args", "[" * 10_000 + "]" * 10_000], "nested too deeply"),
    (["dispatch", "tests.noop", "--kwargs", '{"queue": 1}'], "queue are reserved"),
    (["dispatch", "tests.noop", "--args", '{"delay": 1}'], "delay are reserved"),
    (["work", "--queue", "", "--once"], "no queue named in ''"),
    (["work", "--queue", ",", "--once"], "no queue named in ','"),
    (["work", "--queue", "a b", "--once"], "bad queue name 'a b'"),
    (["dispatch", "tests.noop", "--queue", "{x}"], "bad queue name '{x}'"),
    (["dispatch", "tests.noop", "--queue", "a b"], "bad queue name 'a b'"),
    (["queue", "size", "a b"], "bad queue name 'a b'"),
    (["queue", "size", "a,b"], "size takes one queue"),
    (["queue", "monitor", "default", "--max", "-1"], "'-1' is not a whole number >= 0"),
    (["failed", "list", "--queue", "{x}"], "bad queue name '{x}'"),
    (["failed", "retry", "--queue", "a\nb"], "bad queue name"),
    (["--redis-url", "", "queue", "size", "default"], "empty Redis URL"),
    (["--redis-url", "redis://127.0.0.1:1/notadb", "queue", "size", "default"],
     "the database 'notadb' is not a number"),
    (["--redis-url", "", "run", "--config", "/nonexistent"], "empty Redis URL"),
    (["failed"], "required: action"),
    (["no-such-command"], "invalid choice"),
    (["work", "--tries", "0"], "--tries"),
    (["dispatch", "tests.noop", "--delay", "nan"], "'nan' is not a finite number >= 0"),
    (["failed", "prune", "--hours", "inf"], "'inf' is not a finite number >= 0"),
    (["batches", "prune", "--hours", "-1"], "'-1' is not a finite number >= 0"),
    (["failed", "list", "--page", "0"], "'0' is not a whole number >= 1"),
    (["dispatch", "tj\nobs:f\udcff"], "the job name tj\\nobs:f\\xff is not UTF-8"),
    (["dispatch", "tests.noop", "--args", '["\udcff"]'], "--args/--kwargs are not UTF-8"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv: list[str], says: str) -> None:
    err = assert_one_line(cli(*argv), 2)
    assert says in err


def test_unreachable_redis_is_one_line_and_exit_code_1() -> None:
    result = cli("--redis-url", "redis://127.0.0.1:1/0", "failed", "list")
    assert "Connection refused" in assert_one_line(result, 1)


@pytest.fixture
def locked_runtime_dir(short_tmp: Path) -> Path:
    """A runtime dir of another user (nobody) at 0700, as /run/supervisor-q is to anyone
    but the service user. It holds the sockets' names so nothing else is needed."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a dir to another uid")
    for name in ("redis.sock", "control.sock"):  # a stray master of this uid would answer
        if Path(f"/tmp/supervisor-q-{os.getuid()}/{name}").exists():
            pytest.skip(f"/tmp/supervisor-q-{os.getuid()}/{name} exists")
    short_tmp.chmod(0o755)
    runtime = short_tmp / "run"
    runtime.mkdir(mode=0o700)
    (runtime / "redis.sock").touch()
    (runtime / "control.sock").touch()
    os.chown(runtime, NOBODY, NOBODY)
    return runtime


@needs_root
@pytest.mark.parametrize("argv, fix", [
    (["status"], "SUPERVISOR_Q_SOCKET"),
    (["reload"], "SUPERVISOR_Q_SOCKET"),
    (["failed", "list"], "SUPERVISOR_Q_REDIS_URL"),
    (["restart-workers"], "SUPERVISOR_Q_REDIS_URL"),
    (["dispatch", "tests.noop"], "SUPERVISOR_Q_REDIS_URL"),
])
def test_locked_runtime_dir_is_one_line_naming_path_and_fix(
        locked_runtime_dir: Path, argv: list[str], fix: str) -> None:
    result = cli(*argv, env=clean_env(SUPERVISOR_Q_RUNTIME_DIR=str(locked_runtime_dir)),
                 unprivileged=True)
    err = assert_one_line(result, 2)
    assert f"cannot read {locked_runtime_dir} (owned by nobody, mode 0700)" in err
    assert fix in err


@needs_root
def test_explicit_url_and_socket_win_over_a_locked_runtime_dir(
        locked_runtime_dir: Path, redis_db, short_tmp: Path) -> None:
    env = clean_env(SUPERVISOR_Q_RUNTIME_DIR=str(locked_runtime_dir))
    with_url = {**env, "SUPERVISOR_Q_REDIS_URL": redis_db.url}
    result = cli("dispatch", "tests.noop", "--queue", "cli", env=with_url, unprivileged=True)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert cli("failed", "list", env=with_url, unprivileged=True).stdout == "no failed jobs\n"
    result = cli("--redis-url", redis_db.url, "restart-workers", env=env, unprivileged=True)
    assert result.returncode == 0, result.stderr
    # The library too: dispatch(connection=...) never looks at the runtime dir.
    code = ("from supervisor_q import dispatch; "
            f"print(dispatch('tests.noop', queue='cli', connection={redis_db.url!r}))")
    lib = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=20, preexec_fn=drop_dac_capabilities)
    assert lib.returncode == 0, lib.stderr
    queued = [i.decode() for i in redis_db.client().lrange(QueueKeys("cli").ready, 0, -1)]
    assert sorted(queued) == sorted([job_id, lib.stdout.strip()])
    # An explicit control socket is used as given: "no master", not "cannot read".
    sock = short_tmp / "elsewhere.sock"
    err = assert_one_line(cli("--socket", str(sock), "status", env=env, unprivileged=True), 1)
    assert f"no master is listening on {sock}" in err


def _dispatch_as(uid: int, groups: list[int], runtime: Path) -> subprocess.CompletedProcess:
    """dispatch() from another user, found through the runtime dir alone (no URL).

    The interpreter lives under /root, so the child imports everything as root and only
    then becomes uid, with groups as its only groups, before it touches the runtime dir."""
    code = f"""
import os, sys
import email.parser, secrets, redis, supervisor_q.jobs.registry  # imported while /root is readable
from supervisor_q import dispatch
from supervisor_q.paths import RuntimeDirLocked
os.setgroups({groups!r}); os.setgid({uid}); os.setuid({uid})
try:
    print(dispatch('tests.noop', queue='web'))
except RuntimeDirLocked as exc:
    print(exc, file=sys.stderr); sys.exit(3)
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=20, env=clean_env(SUPERVISOR_Q_RUNTIME_DIR=str(runtime)))


@needs_root
def test_socket_group_lets_another_user_dispatch_to_the_embedded_server(
        short_tmp: Path) -> None:
    try:
        group = grp.getgrnam("www-data").gr_gid
    except KeyError:
        pytest.skip("no www-data group")
    short_tmp.chmod(0o755)
    master = Master(short_tmp, None, {}, extra_env={"SUPERVISOR_Q_SOCKET_GROUP": "www-data"})
    runtime = short_tmp / "run"
    with master:
        sock = wait_until(lambda: (runtime / "redis.sock").exists() and runtime / "redis.sock",
                          message="embedded redis socket")
        wait_until(lambda: sock.stat().st_gid == group, message="socket handed to group")
        modes = {p.name: (stat.S_IMODE(p.stat().st_mode), p.stat().st_gid)
                 for p in (runtime, sock)}
        assert modes == {"run": (0o750, group), "redis.sock": (0o660, group)}
        assert stat.S_IMODE(master.socket.stat().st_mode) == 0o600

        member = _dispatch_as(NOBODY, [group], runtime)
        assert member.returncode == 0, member.stderr
        stranger = _dispatch_as(NOBODY, [], runtime)
        assert stranger.returncode == 3, stranger.stderr
        assert f"cannot read {runtime}" in stranger.stderr

        import redis

        client = redis.Redis.from_url(f"unix://{sock}?db=0")
        queued = [i.decode() for i in client.lrange(QueueKeys("web").ready, 0, -1)]
        client.close()
        assert queued == [member.stdout.strip()]


def test_a_second_run_on_a_busy_control_socket_is_one_line_and_leaves_the_first_be(
        short_tmp: Path, redis_db) -> None:
    first = Master(short_tmp, redis_db.url, {}).start()
    try:
        env = clean_env(SUPERVISOR_Q_REDIS_URL=redis_db.url,
                        SUPERVISOR_Q_SOCKET=str(first.socket),
                        SUPERVISOR_Q_RUNTIME_DIR=str(short_tmp / "run"))
        result = cli("run", "--config", str(first.confd), env=env)
        assert f"another master is running on {first.socket}" in assert_one_line(result, 1)
        assert first.answers() and first.proc.poll() is None
    finally:
        first.stop()


def test_a_named_runtime_dir_is_the_only_place_a_socket_is_looked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor_q.paths import control_socket

    named, other = tmp_path / "named", tmp_path / "xdg"
    named.mkdir()
    (other / "supervisor-q").mkdir(parents=True)
    (other / "supervisor-q" / "control.sock").touch()  # a stale socket in a default place
    monkeypatch.delenv("SUPERVISOR_Q_SOCKET", raising=False)
    monkeypatch.setenv("SUPERVISOR_Q_RUNTIME_DIR", str(named))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(other))
    assert control_socket() == named / "control.sock"
