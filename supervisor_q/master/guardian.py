"""A tiny process that kills the master's process groups when the master dies.

A child dies with the master by its parent-death signal, but a job's own subprocesses
(`subprocess.run(["sleep", "600"])` inside a job) are not the master's children: the
master SIGKILLs a child's process group only after reaping the child, which a SIGKILLed
master never does. So the master forks this guardian first and tells it, over a pipe,
the process group of every child it spawns ("+pgid") and of every child it has reaped
("-pgid", so a reused pid is never killed). When the master dies, by any signal, the
kernel closes the pipe's write end; the guardian reads EOF, SIGKILLs every group it
still knows and exits. An orderly master SIGKILLs its guardian instead, which then
kills nothing. Without systemd this is what keeps the host clean.
"""

from __future__ import annotations

import logging
import os
import signal

from supervisor_q.master.spawn import _close_inherited_fds, _reset_signals
from supervisor_q.proctitle import set_title

log = logging.getLogger("supervisor_q.guardian")


class Guardian:
    """The master's handle on its guardian process (restarted if it dies)."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.fd: int | None = None  # the write end, held by the master only
        self.groups: set[int] = set()

    def start(self) -> None:
        read_fd, write_fd = os.pipe()  # both ends non-inheritable: no exec'd child gets one
        pid = os.fork()
        if pid == 0:  # the guardian: never return into the master's code
            try:
                os.close(write_fd)
                _guard(read_fd)
            finally:
                os._exit(0)
        os.close(read_fd)
        os.set_blocking(write_fd, False)  # a stuck guardian must never block the master
        self.pid, self.fd = pid, write_fd
        if self.groups:  # a restarted guardian learns what its predecessor knew
            self._send("".join(f"+{g}\n" for g in sorted(self.groups)))

    def watch(self, pgid: int) -> None:
        """Kill this process group should the master die."""
        self.groups.add(pgid)
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        """The group's leader was reaped: its pid may be reused, never kill it again."""
        if pgid in self.groups:
            self.groups.discard(pgid)
            self._send(f"-{pgid}\n")

    def exited(self, pid: int) -> bool:
        """The master reaped pid; if it was the guardian, start a new one. True if it was."""
        if pid != self.pid:
            return False
        log.error("guardian pid=%d exited; starting a new one", pid)
        self._close_fd()
        self.start()
        return True

    def close(self) -> None:
        """Orderly master exit: kill the guardian before it can see EOF, so it kills
        nothing (the embedded server still has to be stopped gracefully)."""
        self._stop()
        self._close_fd()

    def _send(self, message: str) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, message.encode())
        except OSError as exc:  # gone, or its pipe is full (stopped): replace it
            log.error("guardian pid=%s unreachable (%s); replacing it", self.pid, exc)
            self._replace()

    def _replace(self) -> None:
        self._stop()
        self._close_fd()
        self.start()

    def _stop(self) -> None:
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.pid = None

    def _close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _guard(read_fd: int) -> None:
    """The guardian's whole life: collect groups until EOF, then kill them."""
    os.setpgid(0, 0)  # out of the terminal's group: a Ctrl-C is for the master
    _reset_signals()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)  # only the master's death ends its watch
    _close_inherited_fds({read_fd})  # hold no socket, lock or pipe of the master's
    set_title("supervisor-q guardian")
    groups: set[int] = set()
    buffer = b""
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        lines = (buffer + chunk).split(b"\n")
        buffer = lines.pop()
        for line in lines:
            if line[:1] in (b"+", b"-") and line[1:].isdigit():
                (groups.add if line[:1] == b"+" else groups.discard)(int(line[1:]))
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
