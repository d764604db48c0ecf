"""Run the dashboard: connect to Redis and serve with uvicorn on a socket already bound
(security.listen checks the bind and the token before this heavy module is imported)."""

from __future__ import annotations

import signal
import socket
import sys

import uvicorn

from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.web.app import build_app
from supervisor_q.web.security import Guard


def open_queue(redis_url: str) -> RedisQueue:
    """The dashboard's Redis; a bad URL raises here, before anything is announced."""
    return RedisQueue(connect(redis_url, socket_timeout=10))


def serve(sock: socket.socket, token: str | None, queue: RedisQueue, redis_url: str) -> None:
    """Serve on sock until SIGINT/SIGTERM."""
    app = build_app(queue, Guard(token), redis_url=redis_url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False,
                            server_header=False)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the
    # handler it found: with the default one the process would die of it ("killed by
    # signal 15" in a master's log) after a clean stop. Exit 0 instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.Server(config).run(sockets=[sock])
