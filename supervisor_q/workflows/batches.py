"""Batches: a group of jobs (and chains) with progress, cancel, and callbacks.

State lives in Redis under one hash tag per batch, sq:{batch:<id>}:state|done|failed,
changed only by atomic Lua (queue/lua_limits.py), idempotent per job id
so an at-least-once rerun never counts twice. Callbacks are registered job names:
before (queued as the batch is made, ahead of its jobs), progress (after each job that
succeeds), then / catch / finally (once each: the scripts set a flag with HSETNX and
the worker that set it dispatches the callback, or a sweep when that worker was lost:
callbacks.py). A batch may be a step of a chain:
the rest of the chain waits in the batch's state and goes on when it finishes, not
cancelled; a cancelled (failed) batch runs the chain's catch instead. Counters follow
Laravel: a failed job stays pending (a retry that succeeds finishes it); finished =
every job succeeded or failed.
Imports dispatching, bulk, registry, context, middleware, chains, batchsend, callbacks, keys,
lua, backend, batchack and payload.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import redis

from supervisor_q.jobs import bulk, dispatching
from supervisor_q.jobs.context import current_job
from supervisor_q.jobs.middleware import Call
from supervisor_q.jobs.registry import Job, Signature, signature
from supervisor_q.queue import lua_limits
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.batchack import Counted
from supervisor_q.queue.keys import BATCH_INDEX_KEY as INDEX_KEY
from supervisor_q.queue.keys import BATCH_OPEN_KEY as OPEN_KEY
from supervisor_q.queue.keys import batch_keys as _keys
from supervisor_q.queue.payload import Payload
from supervisor_q.workflows import batchsend, callbacks, chains
from supervisor_q.workflows.callbacks import CALLBACKS
from supervisor_q.workflows.chains import BATCH, CATCH, CHAIN, Chain, remaining

log = logging.getLogger("supervisor_q.batches")

Item = Signature | Job | str | Chain | list


def _as_chain(item: Item) -> Chain:
    if isinstance(item, Signature):  # the common case, without chain()'s checks
        return Chain([item], None, None)
    made = item if isinstance(item, Chain) else chains.chain(
        item if isinstance(item, list) else [item])
    if not all(isinstance(s, Signature) for s in made.jobs):
        raise ValueError("a batch cannot hold a batch (not even inside one of its chains)")
    return made


@dataclass(frozen=True)
class Progress:
    """A batch as `batches show` prints it."""

    id: str
    name: str
    total: int
    pending: int
    failed: int
    processed: int
    percent: int
    cancelled: bool
    finished: bool
    created_at: float
    finished_at: float | None
    failed_job_ids: list[str]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Batch:
    """A handle on a batch in Redis (it holds no state of its own)."""

    def __init__(self, batch_id: str, queue: RedisQueue | None = None) -> None:
        self.id = batch_id
        self._queue = queue

    @property
    def queue(self) -> RedisQueue:
        return self._queue or dispatching.queue()

    def __repr__(self) -> str:
        return f"<Batch {self.id}>"

    def progress(self) -> Progress | None:
        """Counts now, or None if the batch is unknown (never made, or pruned)."""
        state_key, _, failed_key = _keys(self.id)
        pipe = self.queue.client.pipeline(transaction=False)
        pipe.hgetall(state_key)
        pipe.smembers(failed_key)
        raw, failed_ids = pipe.execute()
        if not raw:
            return None
        s = {_text(k): _text(v) for k, v in raw.items()}
        total, pending = int(s.get("total", 0)), int(s.get("pending", 0))
        processed = total - pending
        return Progress(
            id=self.id, name=s.get("name", ""), total=total, pending=pending,
            failed=len(failed_ids), processed=processed,
            percent=round(100 * processed / total) if total else 100,
            cancelled="cancelled_at" in s, finished="finished_at" in s,
            created_at=float(s.get("created_at", 0)),
            finished_at=int(s["finished_at"]) / 1000 if "finished_at" in s else None,
            failed_job_ids=sorted(_text(i) for i in failed_ids))

    @property
    def cancelled(self) -> bool:
        """True once cancel() ran or (without allow_failures) a job failed."""
        return bool(self.queue.client.hexists(_keys(self.id)[0], "cancelled_at"))

    def cancel(self) -> None:
        """Mark cancelled: jobs that check batch.cancelled (or use SkipIfBatchCancelled)
        stop early; `then` will not run."""
        self.queue.client.hsetnx(_keys(self.id)[0], "cancelled_at", int(time.time() * 1000))

    def add(self, items: Iterable[Item]) -> list[str]:
        """Add jobs (or chains) to this running batch, e.g. from one of its jobs. All
        are built first (a bad item raises with nothing counted or queued), then
        counted (so the batch cannot finish in between), then queued (see _send)."""
        made = [_as_chain(i) for i in items]
        if not made:
            return []
        sender = batchsend.build(made, self.id, None)
        count = sum(len(c.jobs) for c in made)
        pipe = self.queue.client.pipeline(transaction=True)
        pipe.hincrby(_keys(self.id)[0], "total", count)
        pipe.hincrby(_keys(self.id)[0], "pending", count)
        pipe.execute()
        return [str(i) for i in _send(self, sender, made)]


@dataclass
class PendingBatch:
    """A batch being built: batch([...], name=..., then=...).dispatch() -> Batch."""

    items: list[Chain]
    name: str = ""
    then: Signature | None = None
    catch: Signature | None = None
    finally_: Signature | None = None
    allow_failures: bool = False
    queue: str | None = None  # every job (and callback) on this queue unless it names one
    before: Signature | None = None
    progress: Signature | None = None

    def callbacks(self) -> dict[str, dict[str, Any]]:
        given = (self.before, self.progress, self.then, self.catch, self.finally_)
        return {k: v.to_json() for k, v in zip(CALLBACKS, given, strict=True) if v is not None}

    def on(self, queue: str) -> PendingBatch:
        """The same batch on another queue (a chain's queue)."""
        return replace(self, queue=queue)

    def to_json(self) -> dict[str, Any]:
        """As a chain step: {"batch": {...}} (PendingBatch.from_json reads the inside)."""
        return {"batch": {"items": [c.to_json() for c in self.items], "name": self.name,
                          "callbacks": self.callbacks(), "queue": self.queue,
                          "allow_failures": self.allow_failures}}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> PendingBatch:
        calls = {k: Signature.from_json(v) for k, v in (body.get("callbacks") or {}).items()}
        return cls([Chain.from_json(c) for c in body.get("items") or []],
                   str(body.get("name") or ""), calls.get("then"), calls.get("catch"),
                   calls.get("finally"), bool(body.get("allow_failures")), body.get("queue"),
                   calls.get("before"), calls.get("progress"))

    def dispatch(self, *, connection: str | None = None, extra: dict | None = None) -> Batch:
        """Make the batch and queue its jobs; extra is a chain's rest when the batch is
        one of its steps."""
        fake = dispatching.active_fake()
        if fake is not None and hasattr(fake, "record_batch"):
            return fake.record_batch(self)  # type: ignore[no-any-return]
        batch_id = str(uuid.uuid4())
        target = dispatching.queue(connection)
        for c in self.items:
            if self.queue and c.queue is None:
                c.queue = self.queue
        sender = batchsend.build(self.items, batch_id, connection)  # a bad item: no batch at all
        total = sum(len(c.jobs) for c in self.items)
        callbacks_of = self.callbacks()
        state = {"id": batch_id, "name": self.name, "total": total, "pending": total,
                 "allow_failures": "1" if self.allow_failures else "0",
                 "callbacks": json.dumps(callbacks_of), "queue": self.queue or "",
                 "created_at": time.time(), **_chain_state(extra, "progress" in callbacks_of)}
        # Two calls, not one pipeline: the state and the index live in different slots on
        # Redis Cluster. The state first, so a listed batch always has a state.
        target.client.hset(_keys(batch_id)[0], mapping=state)
        target.client.zadd(INDEX_KEY, {batch_id: time.time()})
        callbacks.open_batch(target, batch_id, callbacks_of, state)
        handle = Batch(batch_id, target)
        if "before" in callbacks_of:  # queued ahead of the batch's jobs
            callbacks.fire(handle, {"before": 1}, None)
        if total == 0:  # nothing to wait for: finished now, then and finally run once
            _uncount(handle, 0)
        _send(handle, sender, self.items)
        return handle


def _send(handle: Batch, sender: bulk.Sender, chains: list[Chain]) -> list[str | None]:
    """Queue what sender holds (the jobs already counted); their ids in order. If the
    connection breaks, the BulkDispatchError names the batch (batch_id, batch), and the
    jobs that surely did not land (not_landed) are taken off its counts when Redis
    answers (uncounted: how many), so it can still finish; unknown ones stay counted."""
    try:
        return sender.close()
    except bulk.BulkDispatchError as exc:
        exc.batch_id, exc.batch = handle.id, handle
        size = dict(zip(sender.ids, (len(c.jobs) for c in chains), strict=False))
        gone = sum(size.get(i, 1) for i in exc.not_landed)
        if gone and _uncount(handle, gone):
            exc.uncounted = gone
        raise


def _uncount(handle: Batch, gone: int) -> bool:
    """Take gone counted jobs that will never run off the batch (0: an empty batch) and
    run then / finally if that finished it; False if Redis could not be reached."""
    try:
        fire_then, fire_finally = handle.queue.script(lua_limits.BATCH_UNCOUNT)(
            keys=_keys(handle.id), args=[gone])
        callbacks.fire(handle, {"then": fire_then, "finally": fire_finally}, None)
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    return True


def _chain_state(extra: dict | None, progress: bool) -> dict[str, str]:
    """State fields: has_progress (read by BATCH_SUCCEEDED), chain (a chain's rest)."""
    fields = {"has_progress": "1"} if progress else {}
    if extra and BATCH in extra:
        raise ValueError("a batch cannot be a step of a chain inside a batch")
    rest = {k: extra[k] for k in (CHAIN, CATCH) if extra and k in extra}
    if rest:
        fields["chain"] = json.dumps(rest)
    return fields


Callback = Signature | Job | str | None


def batch(items: Iterable[Item], *, name: str = "", then: Callback = None,
          catch: Callback = None, finally_: Callback = None, allow_failures: bool = False,
          queue: str | None = None, before: Callback = None,
          progress: Callback = None) -> PendingBatch:
    """batch([a.s(1), [b.s(), c.s()]], name="import", then=done.s()).dispatch()"""

    def sig(x: Callback) -> Signature | None:
        return None if x is None else x if isinstance(x, Signature) else signature(x)

    return PendingBatch([_as_chain(i) for i in items], name, sig(then), sig(catch),
                        sig(finally_), allow_failures, queue, sig(before), sig(progress))


chains.STEP_KINDS["batch"] = PendingBatch.from_json


def find(batch_id: str, connection: str | None = None) -> Batch:
    return Batch(batch_id, dispatching.queue(connection))


def current_batch() -> Batch | None:
    """Inside a job: the batch it belongs to, else None."""
    ctx = current_job()
    batch_id = ctx.payload.extra.get(BATCH) if ctx is not None else None
    return Batch(str(batch_id)) if batch_id else None


@dataclass(frozen=True)
class SkipIfBatchCancelled:
    """Middleware: do not run a batch job whose batch was cancelled (it still counts
    as done)."""

    def handle(self, call: Call, proceed: Callable[[], None]) -> None:
        batch = current_batch()
        if batch is not None and batch.cancelled:
            return
        proceed()


# -- worker side (called from lifecycle) -----------------------------------------

def batch_of(payload: Payload) -> str | None:
    """The id of the batch the job belongs to, or None."""
    batch_id = payload.extra.get(BATCH)
    return str(batch_id) if batch_id else None


def job_succeeded(payload: Payload) -> None:
    """Count the job in its batch now (sync mode); a worker counts it with its ack
    instead (queue/batchack.py), then calls counted()."""
    batch_id = batch_of(payload)
    if batch_id is None:
        return
    handle = Batch(batch_id)
    script = handle.queue.script(lua_limits.BATCH_SUCCEEDED)
    reply = script(keys=_keys(handle.id), args=[payload.id])
    counted(Counted(batch_id, payload.id, *(bool(int(v)) for v in reply)))


def counted(count: Counted) -> None:
    """After the job counted in its batch: dispatch the callbacks this worker won."""
    callbacks.fire(Batch(count.batch_id), {"progress": count.counted and count.has_progress,
                                           "then": count.fire_then,
                                           "finally": count.fire_finally}, None)


def sweep(queue: RedisQueue) -> None:
    """Dispatch the then and finally callbacks whose winner was lost (callbacks.due)."""
    for batch_id, kind in callbacks.due(queue):
        log.warning("batch %s: its %s was won by a worker lost before it dispatched it: "
                    "dispatched now", batch_id, kind)
        try:
            callbacks.fire(Batch(batch_id, queue), {kind: 1}, None, claimed=[kind])
        except redis.RedisError:
            raise  # tried again once Redis answers (the claim runs out)
        except Exception as exc:  # a state this code did not write: said, not tried again
            log.error("batch %s: its %s callback cannot be dispatched: %s: %s", batch_id,
                      kind, type(exc).__name__, str(exc)[:200])
            callbacks.mark_done(queue, batch_id, [kind])


def job_failed(payload: Payload, reason: str) -> None:
    batch_id = payload.extra.get(BATCH)
    if not batch_id:
        return
    handle = Batch(str(batch_id))
    script = handle.queue.script(lua_limits.BATCH_FAILED)
    skipped = len(remaining(payload))  # the rest of its chain will never run
    _, fire_catch, fire_finally = script(keys=_keys(handle.id), args=[payload.id, skipped])
    failure = {"id": payload.id, "job": payload.job, "reason": reason}
    callbacks.fire(handle, {"catch": fire_catch, "finally": fire_finally}, failure)


# -- operations ----------------------------------------------------------------

def retry_batch(queue: RedisQueue, batch_id: str) -> int | None:
    """Queue every failed job of the batch again; returns how many (None: no such batch)."""
    state_key, _, failed_key = _keys(batch_id)
    if not queue.client.exists(state_key, failed_key):
        return None
    ids = list(queue.client.smembers(failed_key))
    return queue.retry_failed_many(queue.failed_records_of(ids))


def prune(queue: RedisQueue, older_than: float, *, unfinished: bool = False) -> int:
    """Forget finished (or, with unfinished, any) batches created before epoch older_than."""
    count = 0
    for raw_id in queue.client.zrangebyscore(INDEX_KEY, "-inf", older_than):
        batch_id = _text(raw_id)
        if unfinished or queue.client.hexists(_keys(batch_id)[0], "finished_at"):
            queue.client.delete(*_keys(batch_id))
            queue.client.zrem(INDEX_KEY, batch_id)
            queue.client.zrem(OPEN_KEY, batch_id)
            count += 1
    return count


def list_batches(queue: RedisQueue, limit: int = 50) -> list[Progress]:
    ids = queue.client.zrevrange(INDEX_KEY, 0, limit - 1)
    found = (Batch(_text(i), queue).progress() for i in ids)
    return [p for p in found if p is not None]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
