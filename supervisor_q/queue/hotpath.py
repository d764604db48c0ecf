"""The hot path's own connection: EVALSHA sent and read on one kept connection (or one
per node on Redis Cluster), replies owed by calls sent without waiting, and the end of
a blocking wait from another connection (CLIENT UNBLOCK). A mixin of RedisQueue
(backend.py), split out for size. The bytes on the wire (packing, sending, reading a
reply) are wire.py's. Imports cluster, slotwait and wire.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any

import redis
from redis.commands.core import Script
from redis.connection import Connection
from redis.exceptions import NoScriptError

from supervisor_q import procid
from supervisor_q.queue.cluster import TOPOLOGY_ERRORS, NodeConnections, TopologyChanged, is_cluster
from supervisor_q.queue.slotwait import SlotWaits, await_sockets, unblock
from supervisor_q.queue.wire import pack_evalsha, read, send

__all__ = ["HotPath", "PlainAcks", "kernel_timeouts", "pack_evalsha"]


def kernel_timeouts(sock: socket.socket) -> socket.socket:
    """Move sock's timeout into the kernel (SO_RCVTIMEO, SO_SNDTIMEO) and make the socket
    blocking: a Python socket with a timeout polls before every send and every recv, two
    system calls per job more. A timed-out read or write then fails with EAGAIN, which
    redis-py raises as a ConnectionError (the hot path handles it as it does a
    TimeoutError). TLS sockets are left as they are. Returns sock."""
    timeout = sock.gettimeout()
    if timeout is None or isinstance(sock, ssl.SSLSocket) or timeout <= 0:
        return sock
    value = struct.pack("@ll", int(timeout), int(timeout % 1 * 1_000_000))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    except OSError:  # not supported here: keep Python's timeout
        return sock
    sock.settimeout(None)
    return sock


class PlainAcks(list):
    """The arguments of an ack sent without waiting and without batch counts: if its
    reply is lost with the connection, it is sent again (resend_lost_acks); a count's
    ack is sent again with its count by the worker instead."""

    __slots__ = ()


class HotPath:
    """Connection handling for RedisQueue's per-job calls."""

    client: redis.Redis

    def _init_hot_path(self, client: redis.Redis) -> None:
        self._conn: Connection | None = None  # the hot path's own connection (see _eval)
        self._owed: list[tuple[Script, list[str], list]] = []  # sent, reply not read yet
        # Acks sent without waiting whose connection went before their reply was read:
        # whether they ran is unknown, so they are sent again (resend_lost_acks).
        self.lost_acks: list[tuple[Script, list[str], list]] = []
        self._loaded: set[str] = set()  # scripts loaded before a call sent without waiting
        self._pid = procid.pid()
        self._tuned: socket.socket | None = None  # the socket kernel_timeouts last saw
        self._id_of: tuple[Any, int | None] = (None, None)  # (socket, CLIENT ID) of _conn
        # On Redis Cluster: one hot-path connection per node, picked by the key's slot.
        self._nodes = NodeConnections(client) if is_cluster(client) else None  # type: ignore[arg-type]
        self._slots = SlotWaits(self._nodes) if self._nodes is not None else None
        self._node_client: redis.Redis = client  # the node _conn talks to (CLIENT UNBLOCK)

    def _connection(self, key: str = "") -> Connection:
        if self._nodes is not None:  # cluster: the connection to key's node
            conn, self._node_client = self._nodes.for_key(key)
            if conn is not self._conn and self._owed and self._conn is not None:
                self._collect_owed(self._conn)  # replies owed by the previous node
            self._conn = conn
            return conn
        conn = self._conn
        if conn is None or self._pid != procid.pid():  # never use a connection across fork
            conn = self._conn = self.client.connection_pool.make_connection()
            self._pid = procid.pid()
            self._owed = []
        if conn._sock is None:
            # Connect here, through SentinelManagedConnection's connect() (it asks the
            # sentinels for the primary), before the socket's timeouts are tuned.
            conn.connect()
        if conn._sock is not self._tuned:
            self._tuned = kernel_timeouts(conn._sock)
        return conn

    def _eval(self, script: Script, keys: list[str], args: list) -> Any:
        """EVALSHA on a connection kept for the hot path: redis-py's per-command client
        machinery (pool checkout, retries, observability) costs as much as the round
        trip itself for a no-op job. Errors behave as with Script.__call__."""
        try:
            conn = self._connection(keys[0])
            if self._owed:
                self._collect_owed(conn)
            send(conn, pack_evalsha(script.sha, keys, args), False)
            return read(conn)
        except NoScriptError:  # the server restarted or flushed its scripts
            self.client.script_load(script.script)
            send(conn, pack_evalsha(script.sha, keys, args), False)
            return read(conn)
        except (redis.ConnectionError, redis.TimeoutError, *TOPOLOGY_ERRORS) as exc:
            self._lost(exc)  # unknown whether owed calls ran: reservations expire and retry

    def _eval_many(self, calls: list[tuple[Script, list[str], list]]) -> list[Any]:
        """Several EVALSHA in one round trip, run in order; their replies, in order. On a
        cluster each goes to its key's node: every call is sent before any reply is read.
        A call that found its script missing is sent again alone; the first other error
        is raised once every reply is read (none is left unread on a connection)."""
        try:
            if self._nodes is None:  # one connection: one write
                conns = [self._connection()] * len(calls)
                groups = [(conns[0], calls)]
            else:  # a write per node, in the calls' order on each
                conns = [self._connection(keys[0]) for _, keys, _ in calls]
                groups = [(c, [call for n, call in zip(conns, calls, strict=True) if n is c])
                          for c in {id(c): c for c in conns}.values()]
            if self._owed and self._conn is not None:  # owed by the last node (_connection)
                self._collect_owed(self._conn)
            for conn, mine in groups:  # packed as _eval packs (redis-py's packer: 3x)
                send(conn, b"".join([pack_evalsha(s.sha, k, a) for s, k, a in mine]), False)
            replies: list[Any] = []
            for conn in conns:
                try:
                    replies.append(read(conn))
                except redis.ResponseError as exc:
                    replies.append(exc)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._lost(exc)
        for n, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                replies[n] = self._eval(*calls[n])
            elif isinstance(reply, TOPOLOGY_ERRORS):
                self._lost(reply)
            elif isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    def _eval_nowait(self, script: Script, keys: list[str], args: list) -> None:
        """Send EVALSHA and read its reply later (before the next call): the server acts
        on it at once, and the worker does not wait a round trip for it. The script is
        loaded first (once per connection): a NOSCRIPT reply read only later would leave
        the call undone until then."""
        self._send_nowait([(script, keys, args)])

    def _send_nowait(self, calls: list[tuple[Script, list[str], list]]) -> None:
        """_eval_nowait for several calls to one node (the first call's key's), in order
        and in one write (batchack.py: counts ahead of the ack or reserve of their jobs)."""
        for script, _, _ in calls:
            if script.sha not in self._loaded:
                self.client.script_load(script.script)
                self._loaded.add(script.sha)
        conn = self._connection(calls[0][1][0])
        try:  # no health check (a PING) while replies are owed: it would read one of them
            data = b"".join([pack_evalsha(s.sha, k, a) for s, k, a in calls]) if len(
                calls) > 1 else pack_evalsha(calls[0][0].sha, calls[0][1], calls[0][2])
            send(conn, data, bool(self._owed))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._lost(exc)
        self._owed += calls

    def _lost(self, exc: Exception) -> None:
        """Forget the hot connection after a connection or topology error and raise a
        ConnectionError (callers retry those with backoff); on a cluster the slot map is
        refreshed before the next call (a failover or resharding moved the slot)."""
        self.drop_connection()
        if self._nodes is not None:
            self._nodes.stale = True
            if not isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                raise TopologyChanged(f"{type(exc).__name__}: {exc}") from exc
        raise exc

    def _collect_owed(self, conn: Connection) -> None:
        """Read the replies of calls sent without waiting; redo any that found its script
        missing (after a server restart) once every reply is read, so none is misread."""
        owed, self._owed = self._owed, []
        redo = []
        error: redis.ResponseError | None = None
        for n, item in enumerate(owed):
            try:
                self._owed_reply(item, read(conn))
            except NoScriptError:
                redo.append(item)
            except redis.ResponseError as exc:  # e.g. READONLY: read every reply first
                error = error or exc
            except BaseException:  # the connection went: those unread are still owed
                self._owed = owed[n:] + self._owed
                raise
        if error is not None:
            raise error
        for script, keys, args in redo:
            self.client.script_load(script.script)
            conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            self._owed_reply((script, keys, args), conn.read_response())

    def _owed_reply(self, item: tuple[Script, list[str], list], reply: Any) -> None:
        """Called with each reply of a call sent without waiting (RedisQueue logs a stale
        ack there)."""

    def _client_id(self, conn: Connection) -> int | None:
        """The server's id for the hot-path connection (asked once per socket), so a
        blocking wait can be ended from another connection; None if the server says no."""
        conn.connect()  # no-op when connected; a reconnect means a new id
        sock, client_id = self._id_of
        if sock is not conn._sock:
            try:
                conn.send_command("CLIENT", "ID")
                client_id = int(conn.read_response())
            except redis.ResponseError:
                client_id = None
            self._id_of = (conn._sock, client_id)
        return client_id

    def _await_reply(self, conn: Connection, timeout: float, wake_fd: int,
                     leave: Callable[[], bool], client_id: int | None) -> None:
        """Wait for the reply to a pipelined wait-and-reserve, or for a signal (a byte on
        wake_fd). A signal after which leave() is true unblocks the BLPOP from another
        connection (CLIENT UNBLOCK): the server then runs the pipelined RESERVE anyway and
        both replies arrive, so a job it reserved is seen (and can be handed back) instead
        of being stranded until its reservation expires. Signal handlers only record:
        nothing is ever raised into the middle of reading a reply."""
        if not await_sockets([conn._sock.fileno()], timeout, wake_fd, leave) and leave():
            unblock(self._node_client, client_id)
        # else: read_response waits up to the socket timeout, then raises

    def drop_connection(self) -> None:
        """Forget the hot-path connection (a new one is made on the next call)."""
        if self._conn is not None:
            self._conn.disconnect()
        self._conn = None
        self.lost_acks += [call for call in self._owed if type(call[2]) is PlainAcks]
        self._owed = []
        self._loaded = set()  # a new server may not know them
        self._id_of = (None, None)
        if self._nodes is not None:
            self._nodes.drop()
        if self._slots is not None:
            self._slots.drop()
