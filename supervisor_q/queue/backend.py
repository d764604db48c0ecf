"""RedisQueue: push, reserve, ack, release, fail (the failed-job store: failed.py;
counts and sizes: inspecting.py; Redis Cluster: cluster.py).

Every state change is one Lua script over the keys of one queue (see lua.py), so
a crash at any instant leaves a job either queued, delayed, reserved with a
deadline, or failed: never nowhere. Imports paths, keys, lua, ids, failed, inspecting,
cluster and connection (connect is re-exported here for its many callers).
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script
from redis.connection import Connection
from redis.exceptions import NoScriptError

from supervisor_q.queue import lua
from supervisor_q.queue.cluster import (
    TOPOLOGY_ERRORS,
    NodeConnections,
    TopologyChanged,
    blockable,
    is_cluster,
)
from supervisor_q.queue.connection import connect  # noqa: F401  (re-exported for callers)
from supervisor_q.queue.failed import FailedStore, record_json
from supervisor_q.queue.ids import raw as _raw
from supervisor_q.queue.ids import text as _text
from supervisor_q.queue.inspecting import Inspecting
from supervisor_q.queue.jobinfo import DEFAULT_CAP, Done, ack_args
from supervisor_q.queue.keys import QUEUES_KEY, QueueKeys

# Seconds a reservation outlives the job's own timeout: time for the worker's alarm,
# the master's SIGTERM/SIGKILL escalation and the hand-back to finish first.
RESERVATION_MARGIN = 5.0


@dataclass(frozen=True)
class Reserved:
    """One reserved job as the worker receives it."""

    queue: str
    id: str
    payload: str
    attempts: int
    exceptions: int
    waited: float  # seconds it waited ready in the queue


@dataclass(frozen=True)
class ReserveResult:
    jobs: list[Reserved]
    next_delayed_in: float | None  # seconds until the earliest delayed job is due


class RedisQueue(FailedStore, Inspecting):
    """The queue operations over one Redis connection."""

    def __init__(self, client: redis.Redis, *, margin: float = RESERVATION_MARGIN) -> None:
        self.client = client
        self.margin_ms = int(margin * 1000)
        register = client.register_script
        self._push = register(lua.PUSH)
        self._reserve = register(lua.RESERVE)
        self._ack = register(lua.ACK)
        self._release = register(lua.RELEASE)
        self._fail = register(lua.FAIL)
        self._extend = register(lua.EXTEND)
        self._scripts: dict[str, Script] = {}
        self._keys: dict[str, QueueKeys] = {}
        self._key_lists: dict[str, list[str]] = {}
        self._known_queues: set[str] = set()
        self._conn: Connection | None = None  # the hot path's own connection (see _eval)
        self._owed: list[tuple[Script, list[str], list]] = []  # sent, reply not read yet
        self._pid = os.getpid()
        self._id_of: tuple[Any, int | None] = (None, None)  # (socket, CLIENT ID) of _conn
        # On Redis Cluster: one hot-path connection per node, picked by the key's slot.
        self._nodes = NodeConnections(client) if is_cluster(client) else None  # type: ignore[arg-type]
        self._node_client: redis.Redis = client  # the node _conn talks to (CLIENT UNBLOCK)
        # Job lookup (jobinfo.py): the worker as a JSON fragment, recorded at each reserve
        # ('' = not recorded), and the most done records kept per queue.
        self.who = ""
        self.done_cap = DEFAULT_CAP

    def script(self, source: str) -> Script:
        """A registered Lua script, once per queue object (EVALSHA after the first call)."""
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.client.register_script(source)
        return found

    def _connection(self, key: str = "") -> Connection:
        if self._nodes is not None:  # cluster: the connection to key's node
            conn, self._node_client = self._nodes.for_key(key)
            if conn is not self._conn and self._owed and self._conn is not None:
                self._collect_owed(self._conn)  # replies owed by the previous node
            self._conn = conn
            return conn
        conn = self._conn
        if conn is None or self._pid != os.getpid():  # never use a connection across fork
            conn = self._conn = self.client.connection_pool.make_connection()
            self._pid = os.getpid()
            self._owed = []
        if conn._sock is None:
            # send_packed_command connects by itself, but past SentinelManagedConnection's
            # connect(), which asks the sentinels for the primary: connect explicitly.
            conn.connect()
        return conn

    def _eval(self, script: Script, keys: list[str], args: list) -> Any:
        """EVALSHA on a connection kept for the hot path: redis-py's per-command client
        machinery (pool checkout, retries, observability) costs as much as the round
        trip itself for a no-op job. Errors behave as with Script.__call__."""
        try:
            conn = self._connection(keys[0])
            if self._owed:
                self._collect_owed(conn)
            conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return conn.read_response()
        except NoScriptError:  # the server restarted or flushed its scripts
            self.client.script_load(script.script)
            conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, *TOPOLOGY_ERRORS) as exc:
            self._lost(exc)  # unknown whether owed calls ran: reservations expire and retry

    def _eval_nowait(self, script: Script, keys: list[str], args: list) -> None:
        """Send EVALSHA and read its reply later (before the next call): the server acts
        on it at once, and the worker does not wait a round trip for it."""
        conn = self._connection(keys[0])
        try:
            conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._lost(exc)
        self._owed.append((script, keys, args))

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
        for item in owed:
            try:
                conn.read_response()
            except NoScriptError:
                redo.append(item)
            except redis.ResponseError as exc:  # e.g. READONLY: read every reply first
                error = error or exc
        if error is not None:
            raise error
        for script, keys, args in redo:
            self.client.script_load(script.script)
            conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            conn.read_response()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None
        self.client.close()

    def keys(self, queue: str) -> QueueKeys:
        found = self._keys.get(queue)
        if found is None:
            found = self._keys[queue] = QueueKeys(queue)
        return found

    def _job_keys(self, queue: str) -> list[str]:
        found = self._key_lists.get(queue)
        if found is None:
            k = self.keys(queue)
            found = self._key_lists[queue] = [k.ready, k.notify, k.delayed, k.reserved,
                                              k.payloads, k.attempts, k.exceptions, k.enqueued,
                                              k.running, k.recent, k.recent_records]
        return found

    # -- producing -------------------------------------------------------------

    def push(self, queue: str, job_id: str, payload: str, delay: float = 0.0,
             attempts: int = 0) -> None:
        """Queue payload now, or after delay seconds."""
        k = self.keys(queue)
        keys = [k.ready, k.notify, k.delayed, k.payloads, k.enqueued, k.attempts]
        args = [_raw(job_id), _raw(payload), max(0, int(delay * 1000)), attempts]
        if queue in self._known_queues:
            self._push(keys=keys, args=args)
        elif self._nodes is not None:  # no scripts in cluster pipelines: indexed first,
            self.client.sadd(QUEUES_KEY, queue)  # so nothing can fail once it is queued
            self._push(keys=keys, args=args)
        else:
            pipe = self.client.pipeline(transaction=False)
            self._push(keys=keys, args=args, client=pipe)
            pipe.sadd(QUEUES_KEY, queue)
            pipe.execute()
        self._known_queues.add(queue)

    # -- consuming -------------------------------------------------------------

    def reserve(self, queue: str, *, default_timeout: float,
                ack_ids: Sequence[str | Done] = (), count: int = 1) -> tuple[int, ReserveResult]:
        """Ack ack_ids (finished jobs of this queue, with their done records) and reserve
        up to count jobs, in one round trip. Returns (how many were acked, what was
        reserved)."""
        raw = self._eval(self._reserve, self._job_keys(queue),
                         [int(default_timeout * 1000), self.margin_ms, count, self.who,
                          self.done_cap, *ack_args(ack_ids)])
        return self._parse_reserve(queue, raw)

    def wait_and_reserve(self, queues: Sequence[str], timeout: float, *,
                         default_timeout: float, count: int = 1, wake_fd: int | None = None,
                         leave: Callable[[], bool] | None = None) -> ReserveResult | None:
        """Block until a wake-up token arrives on any queue (or timeout), with the reserve
        of the first queue pipelined behind the wait: the server runs it the moment the
        wait ends, so an idle worker starts a new job one round trip sooner.

        With wake_fd (a signal wake-up pipe) and leave, a signal after which leave() is
        true ends the wait at once, without abandoning the replies: see _await_reply."""
        keys = self._job_keys(queues[0])
        conn = self._connection(keys[0])
        args = [int(default_timeout * 1000), self.margin_ms, count, self.who, self.done_cap]
        if self._nodes is not None:  # BLPOP only over the queues in queues[0]'s slot
            queues, timeout = blockable(queues, timeout, self._job_keys)
        try:
            if self._owed:
                self._collect_owed(conn)
            client_id = self._client_id(conn) if wake_fd is not None else None
            conn.send_packed_command(conn.pack_commands([
                ("BLPOP", *[self.keys(q).notify for q in queues], max(timeout, 0.01)),
                ("EVALSHA", self._reserve.sha, len(keys), *keys, *args)]))
            if wake_fd is not None and leave is not None:
                self._await_reply(conn, timeout, wake_fd, leave, client_id)
            conn.read_response()  # the token, or nil after the timeout: either way...
            try:
                raw = conn.read_response()  # ...the reserve ran right after it
            except NoScriptError:
                self.client.script_load(self._reserve.script)
                return None
        except BaseException as exc:
            # A connection error (or a KeyboardInterrupt): replies may be pending on this
            # connection, so it must not be used again.
            self.drop_connection()
            if isinstance(exc, TOPOLOGY_ERRORS):
                self._lost(exc)
            raise
        return self._parse_reserve(queues[0], raw)[1]

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
        sock_fd = conn._sock.fileno()
        poller = select.poll()  # not select.select: a job may have pushed fds past 1024
        poller.register(sock_fd, select.POLLIN)
        poller.register(wake_fd, select.POLLIN)
        give_up = time.monotonic() + timeout + 1.0
        unblocked = False
        while True:
            left = give_up - time.monotonic()
            if left <= 0:
                return  # read_response below waits up to the socket timeout, then raises
            ready = {fd for fd, _ in poller.poll(left * 1000)}
            if sock_fd in ready:
                return
            if wake_fd in ready:
                _drain(wake_fd)
                if not unblocked and client_id is not None and leave():
                    unblocked = True
                    try:
                        self._node_client.client_unblock(client_id)
                    except redis.RedisError:
                        pass  # the wait then ends at its timeout (at most MAX_BLOCK)

    def drop_connection(self) -> None:
        """Forget the hot-path connection (a new one is made on the next call)."""
        if self._conn is not None:
            self._conn.disconnect()
        self._conn = None
        self._owed = []
        self._id_of = (None, None)
        if self._nodes is not None:
            self._nodes.drop()

    def _parse_reserve(self, queue: str, raw: list) -> tuple[int, ReserveResult]:
        acked = int(raw[0])
        next_ms = raw[1]
        jobs = [
            Reserved(queue, _text(raw[i]), _text(raw[i + 1]), int(raw[i + 2]), int(raw[i + 3]),
                     int(raw[i + 4]) / 1000.0)
            for i in range(2, len(raw), 5)
        ]
        next_in = None if next_ms is None else max(0.0, int(next_ms) / 1000.0)
        return acked, ReserveResult(jobs, next_in)

    def ack(self, queue: str, *job_ids: str | Done) -> int:
        """Delete finished jobs (keeping their done records); returns how many were still
        reserved (0 = none)."""
        return int(self._eval(self._ack, self._job_keys(queue),
                              [self.done_cap, *ack_args(job_ids)]))

    def ack_nowait(self, queue: str, job_id: str | Done) -> None:
        """Delete a finished job without waiting for the reply (prefetch: the next job
        is already here, and its ack must not wait behind it)."""
        self._eval_nowait(self._ack, self._job_keys(queue), [self.done_cap, *ack_args([job_id])])

    def release(self, queue: str, job_id: str, delay: float = 0.0,
                count_exception: bool = False, *, expected_attempts: int | None = None,
                undo_attempt: bool = False) -> bool:
        """Put a reserved job back (after delay seconds); False if no longer reserved
        (or, with expected_attempts, if a later attempt holds it now)."""
        k = self.keys(queue)
        return bool(self._eval(
            self._release,
            [k.ready, k.notify, k.delayed, k.reserved, k.exceptions, k.enqueued, k.attempts],
            [_raw(job_id), max(0, int(delay * 1000)), "1" if count_exception else "0",
             "" if expected_attempts is None else str(expected_attempts),
             "1" if undo_attempt else "0"],
        ))

    def extend(self, queue: str, job_id: str, timeout: float, attempts: int) -> bool:
        """Make the reservation of attempt `attempts` last timeout seconds (plus the margin)
        from now; False if that attempt no longer holds the job."""
        k = self.keys(queue)
        return bool(self._extend(keys=[k.reserved, k.attempts],
                                 args=[job_id, int(timeout * 1000) + self.margin_ms,
                                       str(attempts)]))

    def fail(self, queue: str, job_id: str, record: dict, *, force: bool = False,
             expected_attempts: int | None = None) -> bool:
        """Move a reserved job to the failed store; False if no longer reserved."""
        k = self.keys(queue)
        failed_at = record.setdefault("failed_at", time.time())
        return bool(self._fail(
            keys=[k.reserved, k.payloads, k.attempts, k.exceptions, k.enqueued, k.failed,
                  k.failed_records, k.running],
            args=[_raw(job_id), record_json(record), int(failed_at * 1000),
                  "1" if force else "0",
                  "" if expected_attempts is None else str(expected_attempts)],
        ))


def _drain(fd: int) -> None:
    """Empty a non-blocking wake-up pipe."""
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


