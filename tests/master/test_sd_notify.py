"""sd_notify over a real AF_UNIX datagram socket bound by the test (path and abstract)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor_q.master.systemd import Notifier


@pytest.fixture
def path_socket(short_tmp: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(short_tmp / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"supervisor-q-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        yield sock, "@" + name


def _recv(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def _notifier(monkeypatch: pytest.MonkeyPatch, address: str, **env: str) -> Notifier:
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    for key in ("WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Notifier.from_environment()


@pytest.mark.parametrize("kind", ["path_socket", "abstract_socket"])
def test_exact_datagrams(kind: str, request: pytest.FixtureRequest,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    sock, address = request.getfixturevalue(kind)
    notifier = _notifier(monkeypatch, address, WATCHDOG_USEC="30000000",
                         WATCHDOG_PID=str(os.getpid()))
    assert notifier.enabled and notifier.watchdog_interval == 15.0
    notifier.ready("2 programs, 6 children")
    assert _recv(sock) == b"READY=1\nSTATUS=2 programs, 6 children"
    notifier.ready()
    assert _recv(sock) == b"READY=1"
    notifier.reloading(monotonic_usec=123456789)
    assert _recv(sock) == b"RELOADING=1\nMONOTONIC_USEC=123456789"
    notifier.status("reloading\nconf.d")  # a newline must not inject a second assignment
    assert _recv(sock) == b"STATUS=reloading conf.d"
    notifier.watchdog_ping()
    assert _recv(sock) == b"WATCHDOG=1"
    notifier.stopping("draining 3 jobs")
    assert _recv(sock) == b"STOPPING=1\nSTATUS=draining 3 jobs"
    notifier.stopping()
    assert _recv(sock) == b"STOPPING=1"
    notifier.close()


def test_reloading_reads_clock_monotonic(path_socket: tuple[socket.socket, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sock, address = path_socket
    notifier = _notifier(monkeypatch, address)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = _recv(sock).split(b"\n")
    assert first == b"RELOADING=1"
    assert second.startswith(b"MONOTONIC_USEC=")
    assert before <= int(second.split(b"=")[1]) <= after


def test_environment_is_unset_for_children(path_socket: tuple[socket.socket, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, address = path_socket
    notifier = _notifier(monkeypatch, address, WATCHDOG_USEC="1000000",
                         WATCHDOG_PID=str(os.getpid()))
    assert notifier.enabled
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(os.environ)
    kept = {"NOTIFY_SOCKET": address}
    Notifier.from_environment(kept, unset_environment=False)
    assert kept == {"NOTIFY_SOCKET": address}


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "garbage"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "4000000"}, 2.0),  # WATCHDOG_PID absent: the watchdog is ours
    ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "OWN"}, 2.0),
    ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, None),  # meant for another pid
    ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "x"}, None),
])
def test_watchdog_interval(env: dict[str, str], expected: float | None,
                           path_socket: tuple[socket.socket, str]) -> None:
    sock, address = path_socket
    environ = {"NOTIFY_SOCKET": address}
    environ.update({k: str(os.getpid()) if v == "OWN" else v for k, v in env.items()})
    notifier = Notifier.from_environment(environ)
    assert notifier.watchdog_interval == expected
    notifier.watchdog_ping()
    notifier.status("marker")
    # When the watchdog is not ours no ping is sent: the next datagram is the marker.
    assert _recv(sock) == (b"WATCHDOG=1" if expected else b"STATUS=marker")


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    notifier = Notifier.from_environment()
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.reloading()
    notifier.stopping()
    notifier.status("x")
    notifier.watchdog_ping()
    notifier.close()


def test_unusable_address_disables(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="supervisor_q.systemd"):
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert "not a unix socket" in caplog.text


def test_socket_errors_never_raise_and_log_once(short_tmp: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    missing = str(short_tmp / "nobody-listens")
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": missing})
    with caplog.at_level(logging.WARNING, logger="supervisor_q.systemd"):
        notifier.ready("x")
        notifier.status("y")
        notifier.stopping()
    assert len(caplog.records) == 1
    assert "cannot notify systemd" in caplog.records[0].getMessage()
    notifier.close()
