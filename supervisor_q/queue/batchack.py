"""A batch job's bookkeeping in the round trip of its ack: BATCH_SUCCEEDED_MANY
(lua_limits; one call for the jobs of one batch acked together) sent with the ACK or
RESERVE that acks the jobs, in one pipeline on plain Redis and
Sentinel, or sent without waiting ahead of an ack or reserve sent without waiting
(counts_nowait: the worker's fetch-ahead and held acks; the replies are read with the
reserve's, or before the next job, and kept here until the worker takes them). On Redis
Cluster the batch's keys (sq:{batch:<id>}:...) live in another slot than the queue's,
so each call goes to its own node's connection, all sent before any reply is read (one
round trip of waiting, not two), and counts are not sent without waiting. A mixin of
RedisQueue (backend.py). Imports keys, cluster and lua_limits (the connections are
hotpath.py's: RedisQueue._eval_many, _send_nowait).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from supervisor_q.queue import lua_limits
from supervisor_q.queue.cluster import TOPOLOGY_ERRORS
from supervisor_q.queue.keys import batch_keys

Call = tuple[Script, list[str], list]

# Batch id -> its keys (batch_keys), for the counts of the batches this process ran last
# (bounded: forgotten wholesale past KEYS_KEPT ids).
_keys_of: dict[str, list[str]] = {}
KEYS_KEPT = 256


@dataclass(frozen=True)
class BatchCount:
    """A finished job to count in its batch, with its ack."""

    batch_id: str
    job_id: str


class CountArgs(list):
    """BATCH_SUCCEEDED_MANY's arguments (holder, then each job's id and token), knowing
    the counts they carry: its reply is matched to them (answers) without parsing the call."""

    __slots__ = ("counts",)

    def __init__(self, counts: list[BatchCount], args: list[str]) -> None:
        super().__init__(args)
        self.counts = counts

    def answers(self, reply: Any) -> list[Counted]:
        """Each count's answer in the reply: four digits per job (0 or 1)."""
        digits = reply if isinstance(reply, bytes) else str(reply).encode()
        one = ord("1")
        return [Counted(c.batch_id, c.job_id, digits[n] == one, digits[n + 1] == one,
                        digits[n + 2] == one, digits[n + 3] == one)
                for n, c in zip(range(0, 4 * len(self.counts), 4), self.counts, strict=True)]


@dataclass(frozen=True)
class Counted:
    """BATCH_SUCCEEDED's answer for one job: whether it counted (now, or in a call whose
    reply was lost) and which callbacks this worker won and must dispatch."""

    batch_id: str
    job_id: str
    counted: bool
    fire_then: bool
    fire_finally: bool
    has_progress: bool


class BatchAck:
    """Builds the BATCH_SUCCEEDED calls that ride with an ack; reads their replies."""

    _owed: list[Call]  # hotpath.py's: calls sent, their reply not read yet
    _nodes: Any  # hotpath.py's: None unless on Redis Cluster
    _counted_owed: list[Counted]  # replies of counts sent without waiting, read
    _counts_unread: int  # count calls sent without waiting, their reply not read yet

    def script(self, source: str) -> Script:
        raise NotImplementedError

    def holder(self) -> str:
        raise NotImplementedError

    def token(self, queue: str, job_id: str) -> str:
        raise NotImplementedError

    def _collect_owed(self, conn: Any) -> None:
        raise NotImplementedError

    def _send_nowait(self, calls: list[Call]) -> None:  # hotpath.py's
        raise NotImplementedError

    def count_calls(self, queue: str, counts: Sequence[BatchCount]) -> list[Call]:
        """One BATCH_SUCCEEDED_MANY per batch (its jobs in counts' order; the batches in
        the order of their first job), with each job's reservation token (read before the
        ack forgets it), so a call sent again after a lost reply is recognised."""
        script, holder = self.script(lua_limits.BATCH_SUCCEEDED_MANY), self.holder()
        groups: dict[str, list[BatchCount]] = {}
        for c in counts:
            groups.setdefault(c.batch_id, []).append(c)
        calls: list[Call] = []
        for batch_id, group in groups.items():
            args = [holder]
            for c in group:
                args += (c.job_id, self.token(queue, c.job_id))
            calls.append((script, _batch_keys(batch_id), CountArgs(group, args)))
        return calls

    @property
    def counts_ride_ahead(self) -> bool:
        """Whether counts can be sent without waiting on the hot connection: not on Redis
        Cluster, where a batch's keys live on another node than the queue's (sending
        there would first wait for the replies owed by the queue's node)."""
        return self._nodes is None

    def counts_nowait(self, queue: str, counts: Sequence[BatchCount], then: Call) -> None:
        """Send the counts' BATCH_SUCCEEDED, then the call then (an ACK or RESERVE acking
        their jobs) without waiting, in one write: the server runs them in that order.
        Their replies are read with any later reply on the connection (owed_count) and
        taken with take_counted."""
        calls = self.count_calls(queue, counts)
        self._send_nowait([*calls, then])
        # (a count sent on a connection lost later stays unread: take_counted)
        self._counts_unread += len(calls)

    def owed_count(self, item: Call, reply: Any) -> bool:
        """Keep the reply of a count sent without waiting; False if the call was none."""
        args = item[2]
        if type(args) is not CountArgs:
            return False
        self._counted_owed += args.answers(reply)
        self._counts_unread -= 1
        return True

    @property
    def counts_unread(self) -> int:
        """How many count calls sent without waiting have their reply still unread."""
        return self._counts_unread

    def take_counted(self) -> list[Counted] | None:
        """The answers of the counts sent without waiting (their replies read now if still
        owed), all of them, each once; None if a reply was lost with the connection
        (whether those counts ran is unknown: the caller sends every count sent this way
        since it last took them again, with its ack; BATCH_SUCCEEDED answers a repeated
        call as it did the first)."""
        conn = getattr(self, "_conn", None)
        if self._counts_unread and self._owed and conn is not None:
            try:
                self._collect_owed(conn)
            except (redis.ConnectionError, redis.TimeoutError, *TOPOLOGY_ERRORS):
                self.drop_connection()  # replies may be left unread on it
        if self._counts_unread:  # the connection went, and those replies with it
            self._counts_unread, self._counted_owed = 0, []
            return None
        found, self._counted_owed = self._counted_owed, []
        return found

    def drop_connection(self) -> None:  # hotpath.py's
        raise NotImplementedError


def _batch_keys(batch_id: str) -> list[str]:
    found = _keys_of.get(batch_id)
    if found is None:
        if len(_keys_of) >= KEYS_KEPT:
            _keys_of.clear()
        found = _keys_of[batch_id] = batch_keys(batch_id)
    return found


def counted(calls: Sequence[Call], replies: Sequence[Any]) -> list[Counted]:
    """The answers of count_calls' calls from their replies, in the counts' order by batch."""
    return [found for (_, _, args), reply in zip(calls, replies, strict=True)
            for found in args.answers(reply)]
