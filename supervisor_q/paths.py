"""Well-known locations: the runtime dir (control socket, embedded Redis socket) and data dir.

Read at call time, never at import time, so tests and systemd can steer them with
environment variables. Imports nothing else from the package.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class BadRedisUrl(ValueError):
    """A Redis URL that does not parse; the message is one line for the user."""


_SECRET_OPTION = re.compile(r"pass|secret|token|key|auth|cred", re.IGNORECASE)


def redact(url: str, text: str | None = None) -> str:
    """url with every secret masked: the password of `scheme://user:password@...` and
    the value of every query option whose name looks secret (`*password*`, `*token*`,
    `*key*`, ...). With text: text with each of url's secrets, in any form, masked."""
    from urllib.parse import quote, unquote

    secrets: set[str] = set()
    head, sep, rest = url.partition("://")
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0] if sep else ""
    userinfo = netloc.rpartition("@")[0]
    if ":" in userinfo:
        secrets.add(userinfo.partition(":")[2])
        url = url.replace(f"{userinfo}@", f"{userinfo.partition(':')[0]}:***@", 1)
    base, qmark, query = url.partition("?")
    options = []
    for raw in query.split("&") if qmark else []:
        name, has_value, value = raw.partition("=")
        if has_value and value and _SECRET_OPTION.search(unquote(name)):
            secrets.add(value.partition("#")[0])
            raw = f"{name}=***"
        options.append(raw)
    if text is None:
        return base + qmark + "&".join(options)
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, unquote(secret), quote(unquote(secret), safe="")}:
            text = text.replace(form, "***") if form else text
    return text


class RuntimeDirLocked(PermissionError):
    """A runtime dir that may hold a master's sockets but that this user cannot read."""


def check_database(url: str) -> None:
    """redis-py ignores a database path that is not a number (redis://h/notadb): a
    ValueError here, so a typo is a bad URL, not a quiet connection to database 0."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    db = unquote(parts.path).strip("/") if parts.scheme in ("redis", "rediss") else ""
    if db and not db.isdigit():
        raise ValueError(f"the database {db!r} is not a number")


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
    raise RuntimeDirLocked("no writable runtime dir; set SUPERVISOR_Q_RUNTIME_DIR")


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


def _owner_and_mode(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "permission denied"
    try:
        import pwd

        owner = pwd.getpwuid(st.st_uid).pw_name
    except (ImportError, KeyError):
        owner = f"uid {st.st_uid}"
    return f"owned by {owner}, mode {st.st_mode & 0o7777:04o}"


def locked_error(directory: Path, fix: str) -> RuntimeDirLocked:
    return RuntimeDirLocked(
        f"cannot read {directory} ({_owner_and_mode(directory)}): run as that user, "
        f"{fix}")


def _find_socket(name: str, fix: str) -> Path | None:
    """The first runtime dir holding name; a locked dir is skipped, but if no readable dir
    holds one, the locked one is reported rather than silently falling back to a default.
    SUPERVISOR_Q_RUNTIME_DIR, when set, is the only place looked in: a stale socket in a
    default dir (another master's, long gone) must not answer for the dir the user named."""
    locked: Path | None = None
    named = os.environ.get("SUPERVISOR_Q_RUNTIME_DIR")
    candidates = [Path(named.split(":")[0])] if named else runtime_dir_candidates()
    for candidate in candidates:
        sock = candidate / name
        try:
            if sock.exists():
                return sock
        except PermissionError:
            locked = locked or candidate
    if locked is not None:
        raise locked_error(locked, fix)
    return None


def control_socket(explicit: str | None = None) -> Path:
    """--socket, else SUPERVISOR_Q_SOCKET, else the first runtime dir holding one."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("SUPERVISOR_Q_SOCKET")
    if env:
        return Path(env)
    found = _find_socket("control.sock", "or set --socket / SUPERVISOR_Q_SOCKET")
    return found if found is not None else runtime_dir() / "control.sock"


def resolve_redis_url(explicit: str | None = None) -> str:
    """connection= / --redis-url, else SUPERVISOR_Q_REDIS_URL, else a running embedded
    server's socket, else redis://127.0.0.1:6379/0. An empty URL given is an error."""
    if explicit is not None and not explicit.strip():
        raise BadRedisUrl("empty Redis URL (e.g. redis://HOST:6379/0)")
    if explicit:
        return explicit
    env = os.environ.get("SUPERVISOR_Q_REDIS_URL")
    if env:
        return env
    found = _find_socket("redis.sock", "add yourself to its socket group "
                         "(SUPERVISOR_Q_SOCKET_GROUP), or set SUPERVISOR_Q_REDIS_URL")
    return f"unix://{found}?db=0" if found is not None else DEFAULT_REDIS_URL
