"""The Prometheus endpoint: GET /metrics, served from the master's own loop.

Not prometheus_client's start_http_server: that runs a thread, and the master forks
only while single-threaded (ARCHITECTURE.md's rule 7). This server is non-blocking and
driven by the master's selector, like the control socket: accept, read the request head
(bounded), answer with prometheus_client's exposition of the registry, close. A scrape
costs the master the time to render the text; a slow reader never blocks it.
"""

from __future__ import annotations

import selectors
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from supervisor_q.observe.counters import Counters
from supervisor_q.observe.queues import QueueGauges

MAX_HEAD = 8192  # request line and headers
MAX_CONNECTIONS = 32  # more at once: the oldest is dropped
IDLE = 10.0  # seconds a connection may take to send its request and read the answer


class GaugeCollector(Collector):
    """Gauges computed at scrape time from what the master's slow tick measured."""

    def __init__(self, counters: Counters, queues: Callable[[], Mapping[str, QueueGauges]]):
        self.counters = counters
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        procs = GaugeMetricFamily("supervisorq_processes", "Children by program and state",
                                  labels=["program", "state"])
        for (program, state), count in sorted(self.counters.processes.items()):
            procs.add_metric([program, state], count)
        yield procs
        jobs = GaugeMetricFamily("supervisorq_queue_jobs", "Jobs in a queue, by state",
                                 labels=["queue", "state"])
        oldest = GaugeMetricFamily("supervisorq_queue_oldest_wait_seconds",
                                   "How long the oldest ready job has waited",
                                   labels=["queue"])
        for name, gauges in sorted(self.queues().items()):
            for state, count in gauges.counts.items():
                jobs.add_metric([name, state], count)
            oldest.add_metric([name], gauges.oldest_wait)
        yield jobs
        yield oldest


@dataclass
class _Conn:
    sock: socket.socket
    since: float
    head: bytes = b""
    reply: memoryview | None = None


@dataclass
class MetricsServer:
    """HTTP on (host, port), for the master's selector: open(), then accept() on the
    listening socket and ready(conn, mask) on each connection (see ControlServer)."""

    host: str
    port: int
    registry: CollectorRegistry
    sock: socket.socket | None = None
    conns: dict[int, _Conn] = field(default_factory=dict)

    def open(self) -> socket.socket:
        """Bind and listen; raises OSError (address in use, bad host)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        return sock

    @property
    def address(self) -> tuple[str, int]:
        assert self.sock is not None
        host, port = self.sock.getsockname()[:2]
        return host, port

    def accept(self, now: float) -> tuple[socket.socket | None, list[socket.socket]]:
        """(the new connection or None, connections dropped to make room: unregister)."""
        assert self.sock is not None
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None, []
        conn.setblocking(False)
        dropped = []
        while len(self.conns) >= MAX_CONNECTIONS:
            oldest = min(self.conns.values(), key=lambda c: c.since)
            dropped.append(oldest.sock)
            self.close_connection(oldest.sock)
        self.conns[conn.fileno()] = _Conn(conn, now)
        return conn, dropped

    def stale(self, now: float) -> list[socket.socket]:
        """Connections older than IDLE: the caller unregisters and closes them."""
        return [c.sock for c in self.conns.values() if now - c.since > IDLE]

    def ready(self, conn: socket.socket, mask: int) -> int:
        """Serve a connection the selector reported; the events to wait for next
        (0 when it is done and closed)."""
        state = self.conns.get(conn.fileno())
        if state is None:
            return 0
        if state.reply is None:
            try:
                chunk = conn.recv(4096)
            except (BlockingIOError, InterruptedError):
                return selectors.EVENT_READ
            except OSError:
                chunk = b""
            state.head += chunk
            if not chunk:
                self.close_connection(conn)
                return 0
            if b"\r\n\r\n" not in state.head and len(state.head) < MAX_HEAD:
                return selectors.EVENT_READ
            state.reply = memoryview(self.respond(state.head))
        return self._send(conn, state)

    def _send(self, conn: socket.socket, state: _Conn) -> int:
        try:
            while state.reply:
                state.reply = state.reply[conn.send(state.reply):]
        except (BlockingIOError, InterruptedError):
            return selectors.EVENT_WRITE
        except OSError:
            pass
        self.close_connection(conn)
        return 0

    def respond(self, head: bytes) -> bytes:
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
            return _http(405 if len(parts) == 3 else 400, b"text/plain", b"GET /metrics\n")
        if parts[1].split(b"?", 1)[0] not in (b"/metrics", b"/"):
            return _http(404, b"text/plain", b"not found: try /metrics\n")
        body = generate_latest(self.registry)
        return _http(200, CONTENT_TYPE_LATEST.encode(), b"" if parts[0] == b"HEAD" else body)

    def close_connection(self, conn: socket.socket) -> None:
        self.conns.pop(conn.fileno(), None)
        try:
            conn.close()
        except OSError:
            pass

    def close(self) -> None:
        for state in list(self.conns.values()):
            self.close_connection(state.sock)
        if self.sock is not None:
            self.sock.close()
            self.sock = None


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


def _http(code: int, content_type: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (code, _REASONS[code], content_type, len(body))
            + body)
