"""The webhook delivery process: forked by the master at its first notification with a
webhook, fed one JSON line per notification over a non-blocking pipe. The master loop
never waits on it: a full pipe (the process stuck on slow webhooks; about 100
notifications fit) drops the notification, logged once until the pipe has room again.
A process rather than a thread, because the master forks its children while
single-threaded (a thread holding a lock in urllib or OpenSSL at a fork could deadlock
the child). It ends at EOF: the master's orderly close, or the master's death.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import time
from collections.abc import Iterable
from typing import Any

from supervisor_q.master.spawn import _close_inherited_fds, _reset_signals
from supervisor_q.observe.webhooks import TIMEOUT, serve
from supervisor_q.proctitle import set_title

log = logging.getLogger("supervisor_q.alerts")

PIPE_BUF = select.PIPE_BUF  # a write up to this size is all or nothing


class WebhookProcess:
    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self.pid: int | None = None
        self.fd: int | None = None  # the write end, the master's only
        self.overflowing = False

    def start(self) -> None:
        read_fd, write_fd = os.pipe()  # non-inheritable: no exec'd child gets either
        pid = os.fork()
        if pid == 0:  # the delivery process: never return into the master's code
            try:
                os.close(write_fd)
                _deliver(read_fd, self.timeout)
            finally:
                os._exit(0)
        os.close(read_fd)
        os.set_blocking(write_fd, False)
        self.pid, self.fd = pid, write_fd

    def send(self, urls: Iterable[str], body: dict[str, Any]) -> None:
        """Hand one notification to the process; returns at once."""
        line = json.dumps({"urls": list(urls), "body": body}).encode() + b"\n"
        if len(line) > PIPE_BUF:
            log.warning("alerts: notification of %d bytes not sent (over %d)", len(line),
                        PIPE_BUF)
            return
        if self.fd is None:
            self.start()
        try:
            os.write(self.fd, line)  # type: ignore[arg-type]
            self.overflowing = False
        except BlockingIOError:
            if not self.overflowing:
                self.overflowing = True
                log.warning("alerts: webhooks are slow, notifications dropped until "
                            "they catch up")
        except OSError as exc:  # it died: the next notification starts a new one
            log.error("alerts: webhook process gone (%s); restarting it", exc)
            self.close(0.0)

    def close(self, wait: float = 1.0) -> None:
        """EOF for the process: it delivers what it has for up to `wait` seconds."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.pid is None:
            return
        if not _waited(self.pid, wait):
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.pid = None


def _waited(pid: int, seconds: float) -> bool:
    """True when pid exited (and was reaped) within seconds."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True  # reaped already (the master's loop)
        if done or time.monotonic() >= deadline:
            return bool(done)
        time.sleep(0.02)


def _deliver(read_fd: int, timeout: float) -> None:
    os.setpgid(0, 0)  # out of the terminal's group: a Ctrl-C is for the master
    _reset_signals()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)  # only EOF ends it
    _close_inherited_fds({read_fd})
    set_title("supervisor-q webhooks")
    serve(read_fd, timeout)
