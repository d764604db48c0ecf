"""Run the dashboard: check the bind and token, connect to Redis, serve with uvicorn."""

from __future__ import annotations

import errno
import socket

import uvicorn

from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.web.app import build_app
from supervisor_q.web.security import BindRefused, Guard, check_bind, load_token, parse_bind


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


def serve(bind: str, token_file: str | None, redis_url: str) -> None:
    """Serve until SIGINT/SIGTERM; BindRefused (one line) when it cannot start."""
    host, port = parse_bind(bind)
    token = load_token(token_file)
    check_bind(host, token)
    sock = bound_socket(host, port)
    queue = RedisQueue(connect(redis_url, socket_timeout=10))
    app = build_app(queue, Guard(token), redis_url=redis_url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False,
                            server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
