"""The control socket: a unix socket, owner-only, one JSON request line and one JSON
response line per connection, from a fixed command set.

The server side is non-blocking and driven by the master's selector; the client is
a plain blocking function for the CLI. Imports nothing else from the package.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMMANDS = frozenset({"status", "start", "stop", "restart", "scale", "reload", "pause",
                      "continue", "shutdown", "ping", "signal", "pid", "tail",
                      "periodic"})
MAX_REQUEST = 64 * 1024


class ControlError(RuntimeError):
    """The master answered with an error, or could not be reached."""


Handler = Callable[[str, dict[str, Any]], Any]


@dataclass
class _Connection:
    sock: socket.socket
    buffer: bytes = b""
    reply: memoryview | None = None  # what is left to send


@dataclass
class ControlServer:
    path: Path
    handler: Handler
    sock: socket.socket | None = None
    connections: dict[int, _Connection] = field(default_factory=dict)

    def open(self) -> socket.socket:
        """Bind the socket with mode 0600 inside a 0700 directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.path.exists() or self.path.is_symlink():
            if _answers(self.path):
                raise ControlError(f"another master is running on {self.path}")
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is created 0600, with no window
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
        sock.listen(64)
        sock.setblocking(False)
        self.sock = sock
        return sock

    def accept(self) -> socket.socket | None:
        """Accept one pending connection (registered by the caller for reading)."""
        assert self.sock is not None
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        if not _same_user(conn):
            conn.close()
            return None
        conn.setblocking(False)
        self.connections[conn.fileno()] = _Connection(conn)
        return conn

    def ready(self, conn: socket.socket, mask: int) -> int:
        """Serve a connection the selector reported; return the events to wait for next
        (0 when the connection is done and closed)."""
        if mask & selectors.EVENT_WRITE:
            return self.writable(conn)
        return self.readable(conn)

    def readable(self, conn: socket.socket) -> int:
        """Read what arrived; once a full line is in, answer it (see writable)."""
        state = self.connections.get(conn.fileno())
        if state is None:
            return 0
        try:
            chunk = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return selectors.EVENT_READ
        except OSError:
            chunk = b""
        state.buffer += chunk
        if b"\n" not in state.buffer and chunk and len(state.buffer) < MAX_REQUEST:
            return selectors.EVENT_READ
        line = state.buffer.split(b"\n", 1)[0]
        response = self._respond(line) if chunk or line else None
        if response is None:
            self.close_connection(conn)
            return 0
        state.reply = memoryview(json.dumps(response).encode() + b"\n")
        return self.writable(conn)

    def writable(self, conn: socket.socket) -> int:
        """Send as much of the reply as the socket takes now. Never blocks the master and
        never gives up on a client that is still reading, so a reply of any size arrives
        whole; a client that leaves makes the socket writable with an error, closing it."""
        state = self.connections.get(conn.fileno())
        if state is None or state.reply is None:
            return 0
        try:
            while state.reply:
                state.reply = state.reply[conn.send(state.reply):]
        except (BlockingIOError, InterruptedError):
            return selectors.EVENT_WRITE
        except OSError:
            pass  # the client went away
        self.close_connection(conn)
        return 0

    def _respond(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = request["command"]
            args = request.get("args") or {}
            if command not in COMMANDS or not isinstance(args, dict):
                raise KeyError(command)
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "bad request: expected {\"command\": one of "
                    + ", ".join(sorted(COMMANDS)) + ", \"args\": {...}}"}
        try:
            return {"ok": True, "result": self.handler(command, args)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}

    def close_connection(self, conn: socket.socket) -> None:
        self.connections.pop(conn.fileno(), None)
        try:
            conn.close()
        except OSError:
            pass

    def close(self) -> None:
        for state in list(self.connections.values()):
            self.close_connection(state.sock)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def _same_user(conn: socket.socket) -> bool:
    """Only the master's own user (or root) may control it, whatever the file mode says."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    except (OSError, AttributeError):
        return True  # no SO_PEERCRED: the 0600 mode still guards the socket
    uid = int.from_bytes(creds[4:8], "little")
    return uid in (0, os.getuid())


def _answers(path: Path) -> bool:
    try:
        request(path, "ping", timeout=1.0)
        return True
    except ControlError:
        return False


def request(path: Path | str, command: str, timeout: float = 10.0,
            **args: Any) -> Any:
    """Send one command to the master at path; return its result or raise ControlError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        sock.sendall(json.dumps({"command": command, "args": args}).encode() + b"\n")
        chunks = []  # joined once at the end: linear in the size of the reply
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):  # JSON escapes newlines: only the last byte is one
                break
        data = b"".join(chunks)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ControlError(f"no master is listening on {path} ({exc.strerror})") from None
    except OSError as exc:
        raise ControlError(f"control socket {path}: {exc}") from None
    finally:
        sock.close()
    try:
        response = json.loads(data)
    except ValueError:
        raise ControlError(f"the master closed {path} without an answer") from None
    if not response.get("ok"):
        raise ControlError(response.get("error", "unknown error"))
    return response.get("result")
