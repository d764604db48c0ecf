"""The dashboard's guards: bind policy, the access token, sessions and CSRF tokens.

- Loopback binds need no token; any other bind needs `--token-file` (check_bind).
- With a token, a request carries it as `Authorization: Bearer TOKEN` or holds the
  cookie the login form sets (HttpOnly, SameSite=Strict). Comparisons are constant-time.
- Every browser gets a random session id cookie; its CSRF token is an HMAC of that id
  under a secret made at start, so no server-side state is kept and a token from one
  session is worthless in another. Every POST must carry it (form field `csrf`).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import ipaddress
import secrets
import socket
from pathlib import Path

SESSION_COOKIE = "sq_session"
AUTH_COOKIE = "sq_auth"
LOOPBACK_NAMES = {"localhost"}


class BindRefused(ValueError):
    """The bind address or the token file cannot be used; the message is one line."""


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_bind(value: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BindRefused(f"--bind {value[:80]!r}: expected HOST:PORT, e.g. 127.0.0.1:8787")
    return host.strip("[]"), int(port)


def load_token(path: str | None) -> str | None:
    """The token in the file (stripped); None without a file."""
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BindRefused(f"--token-file {path}: {getattr(exc, 'strerror', None) or exc}")\
            from None
    if len(token) < 16:
        raise BindRefused(f"--token-file {path}: the token must be at least 16 characters")
    return token


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token."""
    if token is None and not is_loopback(host):
        raise BindRefused(f"refusing to bind {host} without --token-file "
                          "(only loopback addresses may go without a token)")


class Guard:
    """The token (if any) and the secret that signs session-bound values."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.secret = secrets.token_bytes(32)

    def sign(self, purpose: str, session: str) -> str:
        return hmac.new(self.secret, f"{purpose}:{session}".encode(), hashlib.sha256).hexdigest()

    def csrf_token(self, session: str) -> str:
        return self.sign("csrf", session)

    def csrf_ok(self, session: str | None, given: str | None) -> bool:
        if not session or not given:
            return False
        return hmac.compare_digest(self.csrf_token(session), given)

    def token_ok(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), self.token.encode())

    def authorized(self, bearer: str | None, session: str | None,
                   auth_cookie: str | None) -> bool:
        """No token configured, a right bearer token, or this session's login cookie."""
        if self.token is None:
            return True
        if bearer is not None:
            return self.token_ok(bearer)
        if not session or not auth_cookie:
            return False
        return hmac.compare_digest(self.sign("auth", session), auth_cookie)


def bound_socket(host: str, port: int) -> socket.socket:
    """Bind now, so a port in use is one clear line before uvicorn starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise BindRefused(f"cannot listen on {host}:{port}: {why}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def listen(bind: str, token_file: str | None) -> tuple[socket.socket, str | None]:
    """Check bind and token file, then bind: (listening socket, token). BindRefused
    (one line) when it cannot; cheap, so a bad start fails within startsecs."""
    host, port = parse_bind(bind)
    token = load_token(token_file)
    check_bind(host, token)
    return bound_socket(host, port), token


def new_session() -> str:
    return secrets.token_urlsafe(24)
