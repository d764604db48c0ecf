"""The sd_notify protocol, spoken directly: READY, RELOADING, STOPPING, STATUS, WATCHDOG.

systemd passes a datagram socket in NOTIFY_SOCKET (a path, or `@name` for the
abstract namespace) and, with WatchdogSec=, the deadline in WATCHDOG_USEC. The
protocol is newline-separated `KEY=value` lines in one datagram, so a few lines
replace a dependency (as gunicorn's `gunicorn/systemd.py` does). Every call is a
no-op without NOTIFY_SOCKET and never raises: a lost notification must not take
the master down; the first failure is logged, later ones are not.

Imports nothing else from the package.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger("supervisor_q.systemd")

_ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _parse_address(value: str | None) -> str | None:
    """NOTIFY_SOCKET -> an AF_UNIX address for sendto, or None when unusable."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace: leading NUL instead of "@"
    if value.startswith("/"):
        return value
    # vsock:CID:PORT (systemd >= 254, for VMs) and anything else: not for a host service.
    log.warning("NOTIFY_SOCKET=%r is not a unix socket; systemd notifications disabled", value)
    return None


def _parse_watchdog(usec: str | None, pid: str | None, own_pid: int) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC), or None when the watchdog is not ours."""
    try:
        micros = int(usec) if usec else 0
        target = int(pid) if pid else own_pid
    except ValueError:
        return None
    if micros <= 0 or target != own_pid:
        return None
    # Half the deadline, as sd_watchdog_enabled(3) advises: one late loop
    # iteration must not be enough to get us killed.
    return micros / 2 / 1_000_000


class Notifier:
    """Sends sd_notify datagrams to systemd; inert when not started by systemd."""

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        self.address = address  # "\0name" for abstract sockets
        self.watchdog_interval = watchdog_interval if address else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None, *,
                         unset_environment: bool = True) -> Notifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID.

        By default the variables are then removed from `environ`, so children
        do not inherit them: a `command:` program or embedded server that
        speaks sd_notify would otherwise talk to systemd as if it were the
        master (NotifyAccess=main rejects it, with a journal warning each time).
        """
        env = os.environ if environ is None else environ
        address = _parse_address(env.get("NOTIFY_SOCKET"))
        interval = _parse_watchdog(env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID"),
                                   os.getpid())
        if unset_environment:
            for key in _ENV_KEYS:
                env.pop(key, None)
        return cls(address, interval)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str | None = None) -> None:
        """Startup (or a reload) is complete: systemctl start/reload returns now."""
        self._send("READY=1", *self._status_line(status))

    def reloading(self, monotonic_usec: int | None = None) -> None:
        """A reload started; send ready() when it is done."""
        if monotonic_usec is None:
            # systemd compares this with its own CLOCK_MONOTONIC, so read exactly that clock.
            monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self, status: str | None = None) -> None:
        """Shutdown started (children are draining)."""
        self._send("STOPPING=1", *self._status_line(status))

    def status(self, text: str) -> None:
        """One line for `systemctl status`."""
        self._send(*self._status_line(text))

    def watchdog_ping(self) -> None:
        """Tell the watchdog the loop is alive; call every `watchdog_interval` seconds."""
        if self.watchdog_interval is not None:
            self._send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @staticmethod
    def _status_line(text: str | None) -> list[str]:
        if text is None:
            return []
        # A newline would start a new KEY=value assignment inside the datagram.
        return ["STATUS=" + " ".join(text.splitlines())]

    def _send(self, *lines: str) -> None:
        if self.address is None or not lines:
            return
        try:
            if self._sock is None:
                # Non-inheritable by default (PEP 446); one socket for the master's life.
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # A full receive queue (a slow or hung reader) must not stall the master
                # loop, not even for a timeout: the message is dropped at once (EAGAIN).
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %r: %s (further failures not logged)",
                            self.address.replace("\0", "@", 1), exc)
