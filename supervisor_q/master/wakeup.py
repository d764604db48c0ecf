"""The master's wake-up mechanism: one place where the loop sleeps and is woken.

Signals reach the loop through `signal.set_wakeup_fd`: the C-level handler
writes the signal number into a non-blocking pipe, and the Python handlers
installed here do nothing at all. So no handler ever logs, takes a lock, talks
to Redis or forks (gunicorn moved reaping out of its SIGCHLD handler for this
reason; huey states the rule). `poke()` wakes the loop from elsewhere (another
thread, a test): it only appends to a deque and writes a byte. Any other
fd (control socket, child pipes) is registered on the same selector, so one
`wait()` covers every source.

Imports nothing else from the package. Must be created and used from the main
thread, because Python only runs signal handlers and accepts
`set_wakeup_fd` there.
"""

from __future__ import annotations

import collections
import os
import selectors
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

# The signals the master reacts to (see README.md "Signals").
MASTER_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
    signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD, signal.SIGUSR2,
)
# Signals whose repeats mean nothing more than the first: one SIGCHLD already
# makes the loop reap with waitpid(-1, WNOHANG) until none is left.
COALESCED_SIGNALS: frozenset[int] = frozenset({signal.SIGCHLD})
_READ_CHUNK = 4096
# Selector tags of our own pipes; private objects, so no caller's tag can collide.
_SIGNAL_PIPE = object()
_POKE_PIPE = object()


@dataclass(frozen=True)
class SignalReceived:
    """A signal was delivered to the master."""

    signum: int  # a signal.Signals member whenever the platform names the number


@dataclass(frozen=True)
class Poked:
    """Another thread asked the loop to wake up (e.g. reason="config")."""

    reason: str


@dataclass(frozen=True)
class FdReady:
    """A registered file object is ready; `tag` is what it was registered with."""

    fileobj: Any
    tag: Any
    mask: int


Event = SignalReceived | Poked | FdReady


def record_early_signals() -> list[int]:
    """Until a Wakeup's handlers are on, the master's signals (but SIGCHLD) are recorded
    in the list returned, for the caller to send again then: a stop (SIGTERM, SIGINT...)
    while the master starts (e.g. its embedded server) would otherwise kill it outright
    and leave that server behind. An exec'd child gets each default action back."""
    early: list[int] = []
    for signum in MASTER_SIGNALS:
        if signum != signal.SIGCHLD:
            signal.signal(signum, lambda got, _frame: early.append(got))
    return early


def send_again(signals: list[int]) -> None:
    """Send this process the signals record_early_signals recorded."""
    for signum in signals:
        os.kill(os.getpid(), signum)


def _record_only(signum: int, frame: FrameType | None) -> None:
    """Do nothing: the wakeup fd already carries the signal number to the loop."""


def _nonblocking_pipe() -> tuple[int, int]:
    # os.pipe() fds are close-on-exec, so `command:` programs never inherit them.
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    return read_fd, write_fd


class Wakeup:
    """Owns the signal pipe, the poke pipe, the record-only handlers and the selector."""

    def __init__(self, signals: Iterable[signal.Signals] = MASTER_SIGNALS) -> None:
        self._signals = tuple(signals)
        self._selector = selectors.DefaultSelector()
        self._sig_r, self._sig_w = _nonblocking_pipe()
        # Pokes get their own pipe: a burst of pokes that filled a shared pipe
        # would make the kernel drop signal bytes (warn_on_full_buffer=False).
        self._poke_r, self._poke_w = _nonblocking_pipe()
        # deque.append/popleft are atomic under the GIL: poke() from another thread takes no lock.
        self._poke_reasons: collections.deque[str] = collections.deque()
        self._previous_handlers: dict[int, Any] = {}
        self._previous_wakeup_fd: int | None = None
        self._closed = False
        self._selector.register(self._sig_r, selectors.EVENT_READ, _SIGNAL_PIPE)
        self._selector.register(self._poke_r, selectors.EVENT_READ, _POKE_PIPE)
        # Install the fd before the handlers, so no signal arrives with nowhere to go.
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        for signum in self._signals:
            self._previous_handlers[signum] = signal.signal(signum, _record_only)

    def register(self, fileobj: Any, tag: Any, events: int = selectors.EVENT_READ) -> None:
        """Watch `fileobj`; `wait()` reports it as FdReady(fileobj, tag, mask).

        The tag can be anything the loop dispatches on, a callback included.
        """
        self._selector.register(fileobj, events, tag)

    def unregister(self, fileobj: Any) -> None:
        """Stop watching `fileobj` (call before closing it)."""
        self._selector.unregister(fileobj)

    def poke(self, reason: str = "poke") -> None:
        """Wake the loop from another thread. Safe to call from any thread, never blocks."""
        if self._closed:  # the fd number may already belong to another file
            return
        # Skip a repeat of the newest reason so a burst of pokes cannot
        # grow the deque without bound (racy by design: a rare duplicate is coalesced later).
        try:
            newest = self._poke_reasons[-1]
        except IndexError:  # empty, possibly emptied by the loop just now
            newest = None
        if newest != reason:
            self._poke_reasons.append(reason)
        try:
            os.write(self._poke_w, b"\0")
        except (BlockingIOError, OSError):
            # Full pipe: the loop is already due to wake. Closed: we are shutting down.
            pass

    def wait(self, timeout: float | None) -> list[Event]:
        """Sleep until a signal, a poke or a registered fd, or `timeout` seconds (None = forever).

        Returns signals first, in delivery order (repeated SIGCHLD coalesced),
        then pokes (duplicate reasons coalesced), then ready fds.
        """
        if timeout is not None:
            timeout = max(0.0, timeout)
        ready = self._selector.select(timeout)
        events: list[Event] = []
        fds: list[Event] = []
        drained_signals = drained_pokes = False
        for key, mask in ready:
            if key.data is _SIGNAL_PIPE:
                drained_signals = True
            elif key.data is _POKE_PIPE:
                drained_pokes = True
            else:
                fds.append(FdReady(key.fileobj, key.data, mask))
        if drained_signals:
            events.extend(self._drain_signals())
        if drained_pokes:
            events.extend(self._drain_pokes())
        return events + fds

    def _drain_signals(self) -> list[Event]:
        seen: set[int] = set()
        events: list[Event] = []
        for signum in _drain(self._sig_r):
            if signum in COALESCED_SIGNALS and signum in seen:
                continue
            seen.add(signum)
            events.append(SignalReceived(_named(signum)))
        return events

    def _drain_pokes(self) -> list[Event]:
        _drain(self._poke_r)
        # Drain the pipe before the deque: a poke racing with us leaves its
        # byte behind, so its reason is reported on the next wait() at worst.
        reasons: list[str] = []
        while self._poke_reasons:
            reason = self._poke_reasons.popleft()
            if reason not in reasons:
                reasons.append(reason)
        return [Poked(r) for r in reasons]

    def close(self) -> None:
        """Restore the handlers and wakeup fd found at creation (the defaults, in the master)."""
        if self._closed:
            return
        self._closed = True
        # Handlers first: a signal arriving in between must not find a closed pipe.
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(-1 if self._previous_wakeup_fd is None else self._previous_wakeup_fd)
        self._selector.close()
        for fd in (self._sig_r, self._sig_w, self._poke_r, self._poke_w):
            os.close(fd)

    def __enter__(self) -> Wakeup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _named(signum: int) -> int:
    # Another module's handler (pytest-timeout's SIGALRM, a real-time signal)
    # also writes to the wakeup fd; report what we cannot name as a plain int.
    try:
        return signal.Signals(signum)
    except ValueError:
        return signum


def _drain(fd: int) -> bytes:
    """Read everything currently in a non-blocking pipe."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for safety
            continue
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
