"""RedisQueue: push, reserve, ack, release, fail (the failed-job store: failed.py;
counts and sizes: inspecting.py; Redis Cluster: cluster.py).

Every state change is one Lua script over the keys of one queue (see lua.py), so
a crash at any instant leaves a job either queued, delayed, reserved with a
deadline, or failed: never nowhere. Imports paths, keys, lua, ids, failed, inspecting,
cluster, hotpath (the per-job connection), batchack (batch counts with the ack; last in
the bases, its stubs overridden), bulk (push_many; push's kept connection), wire (RESERVE's
packed head) and connection (connect is re-exported here for its many callers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from supervisor_q.queue import lua
from supervisor_q.queue.batchack import BatchAck, BatchCount, Counted, counted
from supervisor_q.queue.bulk import BulkPush
from supervisor_q.queue.cluster import TOPOLOGY_ERRORS
from supervisor_q.queue.connection import connect  # noqa: F401  (re-exported for callers)
from supervisor_q.queue.failed import FailedStore, record_json
from supervisor_q.queue.fencing import Fencing
from supervisor_q.queue.hotpath import HotPath, PlainAcks
from supervisor_q.queue.ids import raw as _raw
from supervisor_q.queue.ids import text as _text
from supervisor_q.queue.inspecting import Inspecting
from supervisor_q.queue.jobinfo import DEFAULT_CAP, Done
from supervisor_q.queue.keys import QueueKeys
from supervisor_q.queue.payload import delay_ms
from supervisor_q.queue.slotwait import slot_groups, wait_in_slots
from supervisor_q.queue.wire import Headed, headed

# Seconds a reservation outlives the job's own timeout: time for the worker's alarm,
# the master's SIGTERM/SIGKILL escalation and the hand-back to finish first.
RESERVATION_MARGIN = 5.0


class Reserved(NamedTuple):
    """One reserved job as the worker receives it (a named tuple: cheap to build, one per
    job; _parse_reserve builds it with tuple.__new__)."""

    queue: str
    id: str
    payload: str
    attempts: int
    exceptions: int
    waited: float  # seconds it waited ready in the queue


class ReserveResult(NamedTuple):
    """What a reserve got (a named tuple, as Reserved: one per call)."""

    jobs: list[Reserved]
    next_delayed_in: float | None  # seconds until the earliest delayed job is due
    counted: tuple[Counted, ...] = ()  # the batch counts that rode with the ack


class RedisQueue(HotPath, BulkPush, Fencing, FailedStore, Inspecting, BatchAck):
    """The queue operations over one Redis connection."""

    def __init__(self, client: redis.Redis, *, margin: float = RESERVATION_MARGIN) -> None:
        self.client = client
        self.margin_ms = int(margin * 1000)
        register = client.register_script
        self._reserve = register(lua.RESERVE)
        self._ack = register(lua.ACK)
        self._release = register(lua.RELEASE)
        self._fail = register(lua.FAIL)
        self._extend = register(lua.EXTEND)
        self._scripts: dict[str, Script] = {}
        self._keys: dict[str, QueueKeys] = {}
        self._key_lists: dict[str, list[str]] = {}
        self._queue_of: dict[str, str] = {}  # a queue's ready key -> the queue (_job_keys)
        # RESERVE's six constant arguments per (queue, settings), packed after its head
        self._reserve_heads: dict[tuple, tuple[list, bytes]] = {}
        self._known_queues: set[str] = set()
        self._init_hot_path(client)
        self._ahead: ReserveResult | None = None  # reserve_ahead's reply, once read
        self._counted_owed: list[Counted] = []  # batchack.py: counts sent without waiting
        self._counts_unread = 0
        self._tokens: dict[tuple[str, str], str] = {}  # fencing.py
        self.resent: set[tuple[str, str]] = set()  # fencing.py: acks sent again
        self._holder: tuple[int, str] = (0, "")
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
            self._queue_of[k.ready] = queue  # sq:{queue}:ready (_owed_reply)
            found = self._key_lists[queue] = [k.ready, k.notify, k.delayed, k.reserved,
                                              k.payloads, k.attempts, k.exceptions, k.enqueued,
                                              k.holders, k.running, k.recent, k.recent_records,
                                              k.recent_ended]
        return found

    # -- producing -------------------------------------------------------------

    def push(self, queue: str, job_id: str, payload: str, delay: float = 0.0,
             attempts: int = 0) -> None:
        """Queue payload now, or after delay seconds."""
        k = self.keys(queue)
        self.index_queue(queue)  # before the job: nothing can fail once it is queued
        self.push_kept([k.ready, k.notify, k.delayed, k.payloads, k.enqueued, k.attempts],
                       [_raw(job_id), _raw(payload), delay_ms(delay), attempts])

    # -- consuming -------------------------------------------------------------

    def reserve(self, queue: str, *, default_timeout: float,
                ack_ids: Sequence[str | Done] = (), count: int = 1,
                counts: Sequence[BatchCount] = ()) -> tuple[int, ReserveResult]:
        """Ack ack_ids (finished jobs of this queue, with their done records), count
        counts in their batches (first), and reserve up to count jobs, in one round
        trip. Returns (how many were acked, what was reserved)."""
        calls = self.count_calls(queue, counts)  # before the ack forgets the tokens
        call = (self._reserve, self._job_keys(queue),
                self._reserve_args(queue, default_timeout, count, ack_ids))
        if calls:
            *replies, raw = self._eval_many([*calls, call])
        else:
            replies, raw = [], self._eval(*call)
        acked, result = self._parse_reserve(queue, raw)
        if ack_ids:
            self.stale_acks(queue, ack_ids, acked)
        if counts:
            result = ReserveResult(result.jobs, result.next_delayed_in,
                                   tuple(counted(calls, replies)))
        return acked, result

    def _reserve_args(self, queue: str, default_timeout: float, count: int,
                      ack_ids: Sequence[str | Done]) -> Headed:
        """RESERVE's arguments: the six constant ones (packed once, wire.Headed), then the
        acks' (ack_args)."""
        fixed = (queue, default_timeout, count, self.holder(), self.who, self.done_cap)
        found = self._reserve_heads.get(fixed)
        if found is None:
            if len(self._reserve_heads) >= 64:  # a few queues and counts per worker
                self._reserve_heads.clear()
            first = [int(default_timeout * 1000), self.margin_ms, count, *fixed[3:]]
            found = self._reserve_heads[fixed] = (first, headed(
                self._reserve.sha, self._job_keys(queue), first))
        args = Headed(found[0])
        args.fixed, args.head, args.acks = 6, found[1], ack_ids
        if ack_ids:
            args += self.ack_args(queue, ack_ids)
        return args

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
        args = [int(default_timeout * 1000), self.margin_ms, count, self.holder(), self.who,
                self.done_cap]
        groups = [list(queues)] if self._slots is None else slot_groups(queues, self._notify)
        try:
            if self._owed:
                self._collect_owed(conn)
            if len(groups) > 1:  # cluster: one wait per slot, all at once (slotwait.py)
                return wait_in_slots(self, conn, groups, timeout, args, wake_fd, leave)
            client_id = self._client_id(conn) if wake_fd is not None else None
            conn.send_packed_command(conn.pack_commands([
                ("BLPOP", *[self._notify(q) for q in queues], max(timeout, 0.01)),
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

    def _notify(self, queue: str) -> str:
        return self.keys(queue).notify

    def _parse_reserve(self, queue: str, raw: list) -> tuple[int, ReserveResult]:
        """RESERVE's reply: acked, ms to the next delayed job (nil: none), then five fields
        per reserved job (id, payload, attempts, exceptions, ms it waited)."""
        next_ms = raw[1]
        next_in = None if next_ms is None else max(0.0, int(next_ms) / 1000.0)
        if len(raw) == 2:
            return int(raw[0]), ReserveResult([], next_in)
        jobs = []
        make = tuple.__new__
        holder = self.holder()  # first: a forked child's makes its tokens afresh
        tokens = self._tokens
        for i in range(2, len(raw), 5):
            job_id, payload, attempts = raw[i], raw[i + 1], int(raw[i + 2])
            job_id = job_id.decode("utf-8", "surrogateescape") if type(
                job_id) is bytes else job_id
            payload = payload.decode("utf-8", "surrogateescape") if type(
                payload) is bytes else payload
            jobs.append(make(Reserved, (queue, job_id, payload, attempts, int(raw[i + 3]),
                                        int(raw[i + 4]) / 1000.0)))
            tokens[(queue, job_id)] = f"{holder}|{attempts}"  # as remember() keeps it
        return int(raw[0]), ReserveResult(jobs, next_in)

    def ack(self, queue: str, *job_ids: str | Done) -> int:
        """Delete finished jobs (keeping their done records); returns how many were still
        reserved (0 = none)."""
        return self.ack_counting(queue, job_ids)[0]

    def ack_counting(self, queue: str, job_ids: Sequence[str | Done],
                     counts: Sequence[BatchCount] = ()) -> tuple[int, list[Counted]]:
        """ack, with counts counted in their batches first, in the same round trip."""
        call = (self._ack, self._job_keys(queue),
                [self.done_cap, *self.ack_args(queue, job_ids)])
        calls = self.count_calls(queue, counts)
        if calls:
            *replies, raw = self._eval_many([*calls, call])
        else:
            replies, raw = [], self._eval(*call)
        acked = int(raw)
        self.stale_acks(queue, job_ids, acked)
        return acked, counted(calls, replies)

    def ack_nowait(self, queue: str, *job_ids: str | Done,
                   counts: Sequence[BatchCount] = ()) -> None:
        """Delete finished jobs without waiting for the reply (prefetch: the next job
        is already here, and its ack must not wait behind it); with counts, those are
        counted first the same way (their answers: take_counted)."""
        if counts:
            self.counts_nowait(queue, counts, (self._ack, self._job_keys(queue), [
                self.done_cap, *self.ack_args(queue, job_ids)]))
        else:
            self._eval_nowait(self._ack, self._job_keys(queue), PlainAcks(
                [self.done_cap, *self.ack_args(queue, job_ids)]))

    def resend_lost_acks(self) -> None:
        """Send again, waiting this time, the acks sent without waiting whose reply the
        connection lost (hotpath.PlainAcks): whether they ran is unknown, and a finished
        job left reserved would run again. An ack that did run is a no-op the second
        time (its reservation token is gone); one that fails stays for the next try."""
        while self.lost_acks:
            script, keys, args = self.lost_acks[0]
            self._eval(script, keys, list(args))
            self.lost_acks.pop(0)

    def reserve_ahead(self, queue: str, *, default_timeout: float,
                      ack_ids: Sequence[str | Done] = (), count: int = 1,
                      counts: Sequence[BatchCount] = ()) -> None:
        """reserve(), sent without waiting for its reply (the worker's fetch-ahead: the
        server reserves now, while the current job runs), its counts sent first the same
        way (not on Redis Cluster: counts_ride_ahead). ahead_result() reads the reply (the
        counts' answers: take_counted); any other call on the hot connection reads it
        first and keeps it for ahead_result()."""
        self._ahead = None
        call = (self._reserve, self._job_keys(queue),
                self._reserve_args(queue, default_timeout, count, ack_ids))
        if counts:
            self.counts_nowait(queue, counts, call)
        else:
            self._send_nowait([call])

    def ahead_result(self) -> ReserveResult | None:
        """What the last reserve_ahead() reserved; None if its reply was lost with the
        connection (the worker's reclaim_unknown, or their deadline, brings those back)."""
        try:
            owed = self._owed
            if self._conn is not None and owed and (owed[-1][0] is self._reserve or any(
                    s is self._reserve for s, _, _ in owed)):
                self._collect_owed(self._conn)
        except (redis.ConnectionError, redis.TimeoutError, *TOPOLOGY_ERRORS) as exc:
            self._lost(exc)
        found, self._ahead = self._ahead, None
        return found

    def _owed_reply(self, item: tuple[Script, list[str], list], reply: Any) -> None:
        script, keys, args = item
        if self.owed_count(item, reply):
            return
        queue = self._queue_of.get(keys[0]) or keys[0].partition("{")[2].rpartition("}")[0]
        if script is self._ack and args:  # args: cap, then 4 per job (id first)
            self.stale_acks(queue, [_text(a) for a in args[1::4]], int(reply))
        elif script is self._reserve:  # reserve_ahead; args: wire.Headed (_reserve_args)
            acked, self._ahead = self._parse_reserve(queue, reply)
            if type(args) is Headed and args.acks:
                self.stale_acks(queue, args.acks, acked)

    def release(self, queue: str, job_id: str, delay: float = 0.0,
                count_exception: bool = False, *, expected_attempts: int | None = None,
                undo_attempt: bool = False) -> bool:
        """Put a reserved job back (after delay seconds); False if no longer reserved
        (or, with expected_attempts, if a later attempt holds it now)."""
        k = self.keys(queue)
        done = bool(self._eval(
            self._release,
            [k.ready, k.notify, k.delayed, k.reserved, k.exceptions, k.enqueued, k.attempts,
             k.holders],
            [_raw(job_id), delay_ms(delay), "1" if count_exception else "0",
             "" if expected_attempts is None else str(expected_attempts),
             "1" if undo_attempt else "0", self.token(queue, job_id)],
        ))
        if done:
            self.forget(queue, job_id)
        return done

    def extend(self, queue: str, job_id: str, timeout: float, attempts: int) -> bool:
        """Make the reservation of attempt `attempts` last timeout seconds (plus the margin)
        from now; False if that attempt no longer holds the job."""
        k = self.keys(queue)
        return bool(self._extend(keys=[k.reserved, k.attempts, k.holders],
                                 args=[job_id, int(timeout * 1000) + self.margin_ms,
                                       str(attempts), self.token(queue, job_id)]))

    def fail(self, queue: str, job_id: str, record: dict, *, force: bool = False,
             expected_attempts: int | None = None) -> bool:
        """Move a reserved job to the failed store; False if no longer reserved."""
        k = self.keys(queue)
        failed_at = record.setdefault("failed_at", time.time())
        done = bool(self._fail(
            keys=[k.reserved, k.payloads, k.attempts, k.exceptions, k.enqueued, k.failed,
                  k.failed_records, k.holders, k.running],
            args=[_raw(job_id), record_json(record), int(failed_at * 1000),
                  "1" if force else "0",
                  "" if expected_attempts is None else str(expected_attempts),
                  self.token(queue, job_id)],
        ))
        if done:
            self.forget(queue, job_id)
        return done
