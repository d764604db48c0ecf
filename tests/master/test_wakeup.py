"""Wakeup: real signals to this process, pokes from threads, registered fds, timeouts."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from supervisor_q.master.wakeup import MASTER_SIGNALS, Event, FdReady, Poked, SignalReceived, Wakeup


@pytest.fixture
def wakeup() -> Iterator[Wakeup]:
    w = Wakeup()
    try:
        yield w
    finally:
        w.close()


def _collect(wakeup: Wakeup, count: int, timeout: float = 5.0) -> list[Event]:
    """Wait until at least `count` events arrived (signals may land between two waits)."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        events.extend(wakeup.wait(timeout=deadline - time.monotonic()))
    return events


def test_real_signals_are_reported_in_order(wakeup: Wakeup) -> None:
    sent = [signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGTTIN, signal.SIGQUIT,
            signal.SIGINT, signal.SIGTERM]
    for signum in sent:
        os.kill(os.getpid(), signum)
    events = _collect(wakeup, len(sent))
    assert events == [SignalReceived(s) for s in sent]  # repeated TTIN means two children
    assert all(isinstance(e.signum, signal.Signals) for e in events if isinstance(
        e, SignalReceived))


def test_repeated_sigchld_is_coalesced(wakeup: Wakeup) -> None:
    for signum in (signal.SIGCHLD, signal.SIGHUP, signal.SIGCHLD, signal.SIGCHLD):
        os.kill(os.getpid(), signum)
    # The kernel delivers each kill to this single-threaded sender before kill()
    # returns, so every byte is in the pipe before the first wait().
    assert wakeup.wait(timeout=5.0) == [SignalReceived(signal.SIGCHLD),
                                        SignalReceived(signal.SIGHUP)]


def test_sigchld_from_a_real_child(wakeup: Wakeup) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(0)
    try:
        assert _collect(wakeup, 1) == [SignalReceived(signal.SIGCHLD)]
    finally:
        os.waitpid(pid, 0)


def test_timeout_with_nothing_pending_returns_empty(wakeup: Wakeup) -> None:
    started = time.monotonic()
    assert wakeup.wait(timeout=0.1) == []
    assert time.monotonic() - started >= 0.09
    assert wakeup.wait(timeout=0) == []
    assert wakeup.wait(timeout=-5) == []  # an overdue deadline polls, it does not raise


def test_poke_from_another_thread_wakes_promptly(wakeup: Wakeup) -> None:
    waiting = threading.Event()

    def poker() -> None:
        waiting.wait(5)
        wakeup.poke("config")
        wakeup.poke("config")  # a burst of file events is one wake-up

    thread = threading.Thread(target=poker)
    thread.start()
    started = time.monotonic()
    waiting.set()
    events = _collect(wakeup, 1, timeout=30.0)
    elapsed = time.monotonic() - started
    thread.join()
    assert elapsed < 5.0
    # Both pokes may land in one wait() or in two; either way only "config" comes back.
    assert set(events + wakeup.wait(timeout=0)) == {Poked("config")}


def test_many_pokes_never_block(wakeup: Wakeup) -> None:
    for _ in range(200_000):  # far more than a pipe buffer holds
        wakeup.poke()
    assert wakeup.wait(timeout=0) == [Poked("poke")]
    assert wakeup.wait(timeout=0) == []
    os.kill(os.getpid(), signal.SIGHUP)  # signals still get through afterwards
    assert _collect(wakeup, 1) == [SignalReceived(signal.SIGHUP)]


def test_registered_fd_is_reported_with_its_tag(wakeup: Wakeup) -> None:
    left, right = socket.socketpair()
    with left, right:
        wakeup.register(left, tag="control")
        right.sendall(b"status\n")
        os.kill(os.getpid(), signal.SIGTTOU)
        events = _collect(wakeup, 2)
        assert events[0] == SignalReceived(signal.SIGTTOU)  # signals come before fds
        assert isinstance(events[1], FdReady)
        assert events[1].fileobj is left and events[1].tag == "control"
        left.recv(100)
        wakeup.unregister(left)
        right.sendall(b"more")
        assert wakeup.wait(timeout=0.05) == []


def test_close_restores_previous_handlers() -> None:
    before = {s: signal.getsignal(s) for s in MASTER_SIGNALS}
    w = Wakeup()
    assert all(signal.getsignal(s) not in (before[s], signal.SIG_DFL) for s in MASTER_SIGNALS)
    w.close()
    w.close()  # idempotent
    assert {s: signal.getsignal(s) for s in MASTER_SIGNALS} == before
    previous = signal.set_wakeup_fd(-1)
    assert previous == -1  # no wakeup fd left behind
    w.poke()  # after close: ignored, no exception
