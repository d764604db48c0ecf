"""Config reloads and hostile config input, as users meet them: a real master, real file
edits, real signals, real sd_notify datagrams, `supervisor-q check-config` as a command."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor_q.config.loading import ConfigError, load_config_dir
from supervisor_q.ctl.protocol import ControlError, ControlServer, request
from tests.helpers import stays, wait_until
from tests.masters import Master

IDLE = "queues: [default]\nnumprocs: 0\n"  # a valid program with no children: quick
QUIET = 1.5  # five debounce periods (0.3 s): long enough for a reload storm to show


def log_lines(master: Master, text: str) -> list[str]:
    return [line for line in master.log.read_text(errors="replace").splitlines()
            if text in line]


def check_config(confd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "check-config", str(confd)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def master(short_tmp: Path, redis_url: str) -> Iterator[Master]:
    with Master(short_tmp, redis_url, {"a": IDLE}) as running:
        yield running


@pytest.fixture
def notify(short_tmp: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(short_tmp / "notify.sock"))
        sock.setblocking(False)
        yield sock


def datagrams(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode().split("\n")[0])
        except BlockingIOError:
            return out


# -- reload storm --------------------------------------------------------------------


def test_reading_program_files_never_reloads(master: Master) -> None:
    subprocess.run(["cat", str(master.confd / "a.yaml")], check=True, capture_output=True)
    assert check_config(master.confd).returncode == 0
    (master.confd / "a.yaml").read_text()
    stays(lambda: not log_lines(master, "config reload"))
    assert master.answers()


def test_saving_or_touching_a_file_without_changing_it_never_reloads(master: Master) -> None:
    path = master.confd / "a.yaml"
    path.write_text(path.read_text())  # an editor's save with nothing changed
    subprocess.run(["touch", str(path)], check=True)
    stays(lambda: not log_lines(master, "config reload"))


def test_one_edit_is_exactly_one_reload(master: Master) -> None:
    master.write("a", IDLE + "sleep: 2\n")  # atomic rename, as deploy tools write
    wait_until(lambda: log_lines(master, "config reloaded: replaced: a"), timeout=10)
    stays(lambda: len(log_lines(master, "config reload")) == 1)
    (master.confd / "a.yaml").write_text(IDLE + "sleep: 1\n")  # in place, as editors write
    wait_until(lambda: len(log_lines(master, "config reloaded: replaced: a")) == 2, timeout=10)
    stays(lambda: len(log_lines(master, "config reload")) == 2)


def test_a_broken_file_is_reported_once_per_edit(master: Master) -> None:
    master.write("a", "queues: [default]\nnumprocs: -2\n")
    wait_until(lambda: log_lines(master, "numprocs: must be >= 0, got -2"), timeout=10)
    stays(lambda: len(log_lines(master, "numprocs: must be >= 0")) == 1)
    assert log_lines(master, "config reload refused") and master.answers()


def test_sighup_and_reload_with_nothing_changed_reload_once_each(
        short_tmp: Path, redis_url: str, notify: socket.socket) -> None:
    env = {"NOTIFY_SOCKET": str(short_tmp / "notify.sock")}
    with Master(short_tmp, redis_url, {"a": IDLE}, extra_env=env) as master:
        wait_until(lambda: "READY=1" in datagrams(notify), timeout=10)
        master.signal(signal.SIGHUP)
        wait_until(lambda: log_lines(master, "config reloaded: no changes"), timeout=10)
        assert master.call("reload") == "no changes"
        stays(lambda: len(log_lines(master, "config reload")) == 2)
        assert datagrams(notify) == ["RELOADING=1", "READY=1", "RELOADING=1", "READY=1"]


# -- hostile values ------------------------------------------------------------------


def alias_bomb() -> str:
    """The classic "billion laughs": nine levels of nine aliases, 9**9 strings, ~350 bytes."""
    lines = ['  a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"  {name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    return "queues:\n" + "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_in_one_short_line(short_tmp: Path) -> None:
    confd = short_tmp / "conf.d"
    confd.mkdir()
    assert len(alias_bomb()) < 400
    (confd / "bomb.yaml").write_text(alias_bomb())
    result = check_config(confd)
    assert result.returncode == 1
    assert result.stderr == (f"{confd}/bomb.yaml: queues.b.0: YAML aliases (*a) are not "
                             f"allowed in program files (line 3, column 10); write the value "
                             f"out\n")


def test_alias_bomb_edit_live_keeps_the_master_and_its_log_small(master: Master) -> None:
    master.write("bomb", alias_bomb())
    wait_until(lambda: log_lines(master, "YAML aliases"), timeout=10)
    with pytest.raises(ControlError) as refused:
        master.call("reload")
    assert "YAML aliases" in str(refused.value) and len(str(refused.value)) < 500
    stays(lambda: master.log.stat().st_size < 5000, seconds=0.6)
    assert master.call("ping") == "pong"


def test_every_problem_line_is_bounded(short_tmp: Path) -> None:
    confd = short_tmp / "conf.d"
    confd.mkdir()
    (confd / "long.yaml").write_text("queues: [q]\nnumprocs: " + "x" * 10_000 + "\n")
    (confd / "wide.yaml").write_text(
        "queues: [q]\nbackoff: {" + ", ".join(f"k{i}: {i}" for i in range(900)) + "}\n")
    (confd / "many.yaml").write_text("queues: [q]\n" + "".join(f"k{i}: 1\n" for i in range(500)))
    with pytest.raises(ConfigError) as caught:
        load_config_dir(confd)
    problems = caught.value.problems
    assert all(len(p) <= 300 for p in problems), max(problems, key=len)
    assert problems[0].startswith(f"{confd}/long.yaml: numprocs: must be an integer, got "
                                  f"string 'xxx")
    assert problems[-1] == f"{confd}/wide.yaml: backoff: must be a list, got mapping " \
                           f"{{'k0': 0, 'k1': 1, 'k10': 10, 'k100': 100, ...}}"
    assert f"{confd}/many.yaml: ... and 480 more problems" in problems
    assert len(problems) == 1 + 21 + 1


# -- control replies of any size ---------------------------------------------------------


def test_a_control_reply_of_any_size_arrives_whole_without_blocking_the_server(
        short_tmp: Path) -> None:
    """An 8 MB reply to a client that is slow to read: the server keeps answering others
    meanwhile, never gives up on the slow client, and the client gets every byte."""
    big = "x" * 8_000_000
    server = ControlServer(short_tmp / "c.sock",
                           lambda command, args: big if command == "status" else "pong")
    stop = threading.Event()
    listening = server.open()
    thread = threading.Thread(target=serve, args=(server, listening, stop), daemon=True)
    thread.start()
    try:
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        slow.connect(str(server.path))
        slow.sendall(b'{"command": "status"}\n')
        assert request(server.path, "ping", timeout=5) == "pong"  # not stuck sending
        time.sleep(2.5)  # a client that takes its time: longer than any send timeout
        chunks = []
        while chunk := slow.recv(1 << 20):
            chunks.append(chunk)
        slow.close()
        assert json.loads(b"".join(chunks)) == {"ok": True, "result": big}
        started = time.monotonic()
        assert request(server.path, "status", timeout=30) == big
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        thread.join(10)
        server.close()


def serve(server: ControlServer, listening: socket.socket, stop: threading.Event) -> None:
    """The master's dispatch of control events (arbiter.dispatch), on its own selector."""
    selector = selectors.DefaultSelector()
    selector.register(listening, selectors.EVENT_READ, None)
    while not stop.is_set():
        for key, mask in selector.select(0.1):
            if key.data is None:
                conn = server.accept()
                if conn is not None:
                    selector.register(conn, selectors.EVENT_READ, "control")
                continue
            selector.unregister(key.fileobj)
            wanted = server.ready(key.fileobj, mask)
            if wanted:
                selector.register(key.fileobj, wanted, "control")
    selector.close()


# -- check-config catches what breaks a deploy ---------------------------------------------


def test_check_config_reports_modules_that_cannot_be_imported(short_tmp: Path) -> None:
    code, confd = short_tmp / "code", short_tmp / "conf.d"
    code.mkdir()
    confd.mkdir()
    marker = short_tmp / "imported-by"
    (code / "good_jobs.py").write_text(
        f"import os\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\nprint('noise')\n")
    (code / "broken_jobs.py").write_text("raise RuntimeError('no settings')\n")
    (code / "env_jobs.py").write_text("import os\nos.environ['APP_ENV']\n")
    (confd / "a.yaml").write_text(f"queues: [q]\nimport: [good_jobs, broken_jobs, nosuch.jobs]\n"
                                  f"directory: {code}\n")
    (confd / "b.yaml").write_text(f"queues: [q]\nimport: [env_jobs]\ndirectory: {code}\n"
                                  f"environment: {{APP_ENV: prod}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "supervisor_q", "check-config", str(confd)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert err.splitlines() == [
        f"{confd}/a.yaml: import: cannot import 'broken_jobs': RuntimeError: no settings",
        f"{confd}/a.yaml: import: cannot import 'nosuch.jobs': ModuleNotFoundError: "
        f"No module named 'nosuch'",
    ]
    assert int(marker.read_text()) != proc.pid, "job code ran in the checker itself"
    (confd / "a.yaml").write_text(f"queues: [q]\nimport: [good_jobs]\ndirectory: {code}\n")
    result = check_config(confd)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "a: ok (worker)\nb: ok (worker)\n", "")
    # A missing directory, for a command program too: a warning (it may be a build host).
    (confd / "c.yaml").write_text(f"command: sleep 1\ndirectory: {short_tmp}/gone\n")
    result = check_config(confd)
    assert (result.returncode, result.stderr) == (0, (
        f"warning: {confd}/c.yaml: directory: '{short_tmp}/gone' does not exist on this host "
        f"(its children would go FATAL here)\n"))


def test_check_config_reports_duplicate_keys_and_files_that_are_not_files(
        short_tmp: Path) -> None:
    confd = short_tmp / "conf.d"
    confd.mkdir()
    (confd / "dup.yaml").write_text("queues: [q]\nnumprocs: 1\nnumprocs: 2\n")
    (confd / "nested.yaml").write_text("queues: [q]\nautoscale: {max: 2, max: 3}\n")
    (confd / "gone.yaml").symlink_to("/srv/app/releases/missing/worker.yaml")
    (confd / "dir.yml").mkdir()
    (confd / "ok.yaml").write_text(IDLE)
    result = check_config(confd)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{confd}/dir.yml: is a directory, not a program file (rename it or move it out)",
        f"{confd}/dup.yaml: numprocs: duplicate key at line 3, column 1 (first at line 2, "
        f"column 1); YAML would silently keep only the last one",
        f"{confd}/gone.yaml: dangling symlink to '/srv/app/releases/missing/worker.yaml'",
        f"{confd}/nested.yaml: autoscale.max: duplicate key at line 2, column 21 (first at "
        f"line 2, column 13); YAML would silently keep only the last one",
    ]


def test_a_fifo_named_like_a_program_file_never_blocks_the_master(master: Master) -> None:
    os.mkfifo(master.confd / "pipe.yaml")
    wait_until(lambda: log_lines(master, "pipe.yaml: is not a regular file"), timeout=10)
    assert master.call("ping") == "pong"
