"""Producing fast: many jobs per script call, and one job over a kept connection.

push_many queues a chunk of jobs of one queue with one PUSH_MANY call, which lands
whole or not at all and leaves a marker key (sq:{queue}:chunk:<token>, MARKER_TTL s):
a resend after a lost reply is a no-op, and after a connection error the marker says
whether the chunk landed (ChunkLost.landed True / False, or None when Redis could not
be asked). A single push goes over a connection kept per thread (and per node on Redis
Cluster), past redis-py's per-command pool checkout, as the worker's hot path does; a
connection error on a reused connection is retried once on a fresh one (a stale
socket after a server restart), as redis-py's own retry would; a timeout is not (the
job may have landed). A mixin of RedisQueue
(backend.py). Imports lua, keys, cluster and payload (delays in ms).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.cluster import ClusterPipeline
from redis.exceptions import NoScriptError

from supervisor_q.queue import lua
from supervisor_q.queue.cluster import TOPOLOGY_ERRORS, NodeConnections, is_cluster
from supervisor_q.queue.keys import QUEUES_KEY
from supervisor_q.queue.payload import delay_ms

PIPELINES = (redis.client.Pipeline, ClusterPipeline)

if TYPE_CHECKING:
    from redis.commands.core import Script
    from redis.connection import Connection

    from supervisor_q.queue.keys import QueueKeys

MARKER_TTL = 600  # seconds a chunk's marker lives: ample to ask after a reconnect


class ChunkLost(redis.ConnectionError):
    """The connection broke during a chunk's PUSH_MANY. landed: True (the whole chunk is
    queued), False (none of it is), None (unknown: Redis could not be asked)."""

    def __init__(self, message: str, landed: bool | None, marker: str) -> None:
        super().__init__(message)
        self.landed = landed
        self.marker = marker


class _Kept(threading.local):
    """This thread's kept producing connection (one per node on Redis Cluster)."""

    def __init__(self) -> None:
        self.pid = 0
        self.conn: Connection | None = None
        self.nodes: NodeConnections | None = None
        self.used = False


class BulkPush:
    """push_many and the kept-connection single push of RedisQueue (mixed in)."""

    client: redis.Redis
    _known_queues: set[str]

    if TYPE_CHECKING:
        def keys(self, queue: str) -> QueueKeys: ...
        def script(self, source: str) -> Script: ...

    _kept_local: _Kept | None = None

    def index_queue(self, queue: str) -> None:
        """Add queue to the index of queues (for failed listing), once per process; before
        its first job, so nothing can fail once a job is queued."""
        if queue not in self._known_queues:
            self.client.sadd(QUEUES_KEY, queue)
            self._known_queues.add(queue)

    def push_many(self, queue: str, jobs: Sequence[tuple[str | bytes, str | bytes, float]]
                  ) -> None:
        """Queue jobs (id, payload, delay in s) of one queue in one atomic script call.
        Raises ChunkLost if the connection broke, saying whether the chunk landed."""
        if not jobs:
            return
        self.index_queue(queue)
        k = self.keys(queue)
        marker = k.chunk_marker(uuid.uuid4().hex)
        args: list[Any] = [MARKER_TTL]
        for job_id, payload, delay in jobs:
            args += [job_id, payload, delay_ms(delay)]
        try:
            self.script(lua.PUSH_MANY)(
                keys=[k.ready, k.notify, k.delayed, k.payloads, k.enqueued, marker], args=args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            try:
                landed: bool | None = bool(self.client.exists(marker))
            except (redis.ConnectionError, redis.TimeoutError):
                landed = None
            raise ChunkLost(f"{type(exc).__name__}: {exc}", landed, marker) from exc

    def push_kept(self, keys: list[str], args: list) -> Any:
        """PUSH (one job) over this thread's kept connection; into the pipeline when this
        queue wraps one (queued with the rest, sent at its execute)."""
        if isinstance(self.client, PIPELINES):
            return self.script(lua.PUSH)(keys=keys, args=args, client=self.client)
        kept = self._kept()
        for attempt in (0, 1):
            conn = self._kept_connection(kept, keys[0])
            try:
                return _evalsha(self.client, conn, self.script(lua.PUSH), keys, args)
            except redis.TimeoutError:  # sent, maybe run: never sent twice
                kept.used = False
                self._drop_kept(kept)
                raise
            except redis.ConnectionError:
                reused, kept.used = kept.used, False
                self._drop_kept(kept)
                if attempt or not reused:
                    raise
            except TOPOLOGY_ERRORS:  # a moved slot: refresh the map, send through redis-py
                self._drop_kept(kept)
                return self.script(lua.PUSH)(keys=keys, args=args)
            finally:
                kept.used = kept.conn is not None or kept.nodes is not None
        raise AssertionError("unreachable")

    def _kept(self) -> _Kept:
        kept = self._kept_local
        if kept is None:
            kept = self._kept_local = _Kept()
        if kept.pid != os.getpid():  # never use a connection across fork
            kept.pid, kept.conn, kept.nodes, kept.used = os.getpid(), None, None, False
        return kept

    def _kept_connection(self, kept: _Kept, key: str) -> Connection:
        if is_cluster(self.client):
            if kept.nodes is None:
                kept.nodes = NodeConnections(self.client)  # type: ignore[arg-type]
            conn = kept.nodes.for_key(key)[0]
        else:
            if kept.conn is None:
                kept.conn = self.client.connection_pool.make_connection()
            conn = kept.conn
        if conn._sock is None:
            conn.connect()  # a sentinel-managed connection asks for the primary here
        return conn

    def _drop_kept(self, kept: _Kept) -> None:
        if kept.conn is not None:
            kept.conn.disconnect()
        if kept.nodes is not None:
            kept.nodes.drop()
        kept.conn = None
        kept.nodes = None


def _evalsha(client: redis.Redis, conn: Connection, script: Script, keys: list[str],
             args: list) -> Any:
    """EVALSHA on conn; a missing script (server restarted) is loaded and sent again."""
    try:
        conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
        return conn.read_response()
    except NoScriptError:
        client.script_load(script.script)
        conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
        return conn.read_response()
