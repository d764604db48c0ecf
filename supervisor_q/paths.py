"""Well-known locations: the runtime dir (control socket, embedded Redis socket) and data dir.

Read at call time, never at import time, so tests and systemd can steer them with
environment variables. Imports nothing else from the package.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def runtime_dir_candidates() -> list[Path]:
    """Where a master may keep its sockets, most specific first."""
    found: list[Path] = []
    for var in ("SUPERVISOR_Q_RUNTIME_DIR", "RUNTIME_DIRECTORY"):
        value = os.environ.get(var)
        if value:
            found.append(Path(value.split(":")[0]))
    found.append(Path("/run/supervisor-q"))
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        found.append(Path(xdg) / "supervisor-q")
    found.append(Path(f"/tmp/supervisor-q-{os.getuid()}"))
    return found


def runtime_dir() -> Path:
    """The runtime dir a new master uses: the first candidate it can write."""
    for candidate in runtime_dir_candidates():
        if candidate.is_dir() and os.access(candidate, os.W_OK):
            return candidate
        parent_ok = candidate.parent.is_dir() and os.access(candidate.parent, os.W_OK)
        if not candidate.exists() and parent_ok:
            return candidate
    raise RuntimeError("no writable runtime dir; set SUPERVISOR_Q_RUNTIME_DIR")


def data_dir() -> Path:
    """Where the embedded server keeps its append-only file."""
    value = os.environ.get("SUPERVISOR_Q_DATA_DIR") or os.environ.get("STATE_DIRECTORY")
    if value:
        return Path(value.split(":")[0])
    if os.getuid() == 0:
        return Path("/var/lib/supervisor-q")
    return Path.home() / ".local" / "share" / "supervisor-q"


def embedded_redis_socket(directory: Path) -> Path:
    return directory / "redis.sock"


def control_socket(explicit: str | None = None) -> Path:
    """--socket, else SUPERVISOR_Q_SOCKET, else the first runtime dir holding one."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("SUPERVISOR_Q_SOCKET")
    if env:
        return Path(env)
    for candidate in runtime_dir_candidates():
        if (candidate / "control.sock").exists():
            return candidate / "control.sock"
    return runtime_dir() / "control.sock"


def resolve_redis_url(explicit: str | None = None) -> str:
    """connection= / --redis-url, else SUPERVISOR_Q_REDIS_URL, else a running embedded
    server's socket, else redis://127.0.0.1:6379/0."""
    if explicit:
        return explicit
    env = os.environ.get("SUPERVISOR_Q_REDIS_URL")
    if env:
        return env
    for candidate in runtime_dir_candidates():
        sock = embedded_redis_socket(candidate)
        if sock.exists():
            return f"unix://{sock}?db=0"
    return DEFAULT_REDIS_URL
