"""A batch's callbacks dispatched: then, catch and finally once each, and never lost with
the worker that won them.

The count that wins one of them sets its field in the batch's state (then_at, catch_at,
finished_at: queue/lua_limits.py). Its winner claims it (CLAIM_CALLBACK: "sent:<kind>"
holds the claim's expiry and claimer), dispatches it and marks it done. A winner killed before
that (a SIGKILL while its count's reply was still unread: worker/ahead.py) leaves it won
but not done: a sweep, which every worker runs every SWEEP_EVERY seconds, claims such a
then or finally once it was won GRACE_MS ago and dispatches it. A claimer that dies
between its claim and its mark leaves a claim that runs out after LEASE_MS, and the
callback is dispatched again then: at least once, never none. A claimer whose dispatch
met a Redis fault claims again when it tries again (it may have landed: at least once,
as before claims). (catch is won in a call
whose reply is read at once, and needs the failed job its winner knows: it is claimed,
not swept.) The sweep looks only at the batches indexed as open (BATCH_OPEN_KEY): those
with a then or finally callback or a chain to go on with, until both are done.
Imports registry, chains, keys and lua_limits; batches.py hands it its Batch handles.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from supervisor_q.jobs.registry import Signature
from supervisor_q.queue import lua_limits
from supervisor_q.queue.keys import BATCH_OPEN_KEY as OPEN_KEY
from supervisor_q.queue.keys import batch_keys
from supervisor_q.workflows import chains
from supervisor_q.workflows.chains import CATCH, CHAIN

if TYPE_CHECKING:
    from supervisor_q.queue.backend import RedisQueue
    from supervisor_q.workflows.batches import Batch, Progress

log = logging.getLogger("supervisor_q.batches")

CALLBACKS = ("before", "progress", "then", "catch", "finally")
WON = {"then": "then_at", "catch": "catch_at", "finally": "finished_at"}  # claimed: once each
SWEPT = ("then", "finally")
SWEEP_EVERY = 10.0  # seconds between a worker's sweeps
GRACE_MS = 10_000  # a won callback is swept once it waited this long for its winner
LEASE_MS = 60_000  # how long a claim holds before another may dispatch it again
SWEEP_BATCH = 500  # open batches looked at per sweep (the next ones at the next sweep)


def open_batch(queue: RedisQueue, batch_id: str, callbacks: dict[str, Any],
               state: dict[str, Any]) -> None:
    """Index a new batch for the sweep if it has something to dispatch once it ends."""
    if "then" in callbacks or "finally" in callbacks or "chain" in state:
        queue.client.zadd(OPEN_KEY, {batch_id: time.time()})


def fire(handle: Batch, which: dict[str, int], failure: dict | None,
         claimed: Iterable[str] = ()) -> None:
    """Dispatch the callbacks whose flag this process set (then, catch and finally only
    once claimed here, unless given as claimed); each gets the batch's progress dict
    (plus "failed_job" for catch) as its first argument. With finally, the chain the
    batch is a step of goes on (or runs its catch)."""
    wanted = [k for k in CALLBACKS if which.get(k)]
    state_key = batch_keys(handle.id)[0]
    if any(k in WON for k in wanted):
        wanted = [k for k in wanted if k not in WON or k in claimed
                  or claim(handle.queue, handle.id, k, 0)]
    if not wanted:
        return
    raw_callbacks, queue_name, raw_chain = handle.queue.client.hmget(
        state_key, "callbacks", "queue", "chain")
    callbacks = json.loads(raw_callbacks or "{}")
    progress = handle.progress()
    info = progress.to_json() if progress else {"id": handle.id}
    for kind in wanted:
        body = callbacks.get(kind)
        if not body:
            continue
        sig = Signature.from_json(body)
        if queue_name and not sig.queue:
            sig = sig.on(_text(queue_name))
        arg = {**info, "failed_job": failure} if kind == "catch" else info
        sig.dispatch(prepend=[arg])
        # a progress callback goes once per job of the batch: a line each only on debug
        (log.debug if kind == "progress" else log.info)(
            "batch %s: %s callback %s dispatched", handle.id, kind, sig.job)
    if raw_chain and "finally" in wanted and progress is not None:
        _chain_after(progress, json.loads(raw_chain))
    mark_done(handle.queue, handle.id, [k for k in wanted if k in WON])


def mark_done(queue: RedisQueue, batch_id: str, kinds: list[str]) -> None:
    """The callbacks kinds of the batch are dispatched (or never will be): not swept."""
    if kinds:
        queue.client.hset(batch_keys(batch_id)[0], mapping={f"sent:{k}": "done" for k in kinds})


def claim(queue: RedisQueue, batch_id: str, kind: str, min_age_ms: int) -> bool:
    """Claim the dispatch of the batch's won callback kind for this process (again, if
    it claimed it before: a retry after a Redis fault); False if not won, won less than
    min_age_ms ago, done, or claimed by another process whose claim still holds."""
    return bool(queue.script(lua_limits.CLAIM_CALLBACK)(
        keys=[batch_keys(batch_id)[0]],
        args=[kind, WON[kind], min_age_ms, LEASE_MS, f"{socket.gethostname()}:{os.getpid()}"]))


def _chain_after(progress: Progress, rest: dict[str, Any]) -> None:
    """The batch, a step of a chain, finished: the chain goes on unless it was
    cancelled (a job failed without allow_failures, or cancel()); then its catch runs."""
    if not progress.cancelled:
        chains.continue_from(rest.get(CHAIN) or [], {CATCH: rest[CATCH]} if CATCH in rest else {})
        return
    failure = {"id": progress.id, "job": "batch", "batch": progress.id,
               "reason": f"batch {progress.id} was cancelled",
               "failed_job_ids": progress.failed_job_ids,
               "skipped": chains.skipped_names(rest.get(CHAIN) or [])}
    chains.run_catch(rest.get(CATCH), failure)


_cursor = 0  # where this process's next sweep starts in the open index


def due(queue: RedisQueue) -> list[tuple[str, str]]:
    """Claim the then and finally callbacks of open batches that were won GRACE_MS ago or
    more and are not done (their winner was lost): (batch id, callback) pairs for the
    caller to fire, claimed. Batches whose callbacks are done, or that are gone, leave
    the index."""
    global _cursor
    client = queue.client
    ids = [_text(i) for i in client.zrange(OPEN_KEY, _cursor, _cursor + SWEEP_BATCH - 1)]
    _cursor = 0 if len(ids) < SWEEP_BATCH else _cursor + SWEEP_BATCH
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for batch_id in ids:
        pipe.hmget(batch_keys(batch_id)[0], "id", "sent:then", "sent:finally", *WON.values())
    found, settled = [], []
    for batch_id, (known, *sent, then_at, _, finished_at) in zip(ids, pipe.execute(),
                                                                  strict=True):
        won = dict(zip(SWEPT, (then_at, finished_at), strict=True))
        done = {k for k, s in zip(SWEPT, sent, strict=True) if s and _text(s) == "done"}
        if known is None or (finished_at and (then_at is None or "then" in done)
                             and "finally" in done):
            settled.append(batch_id)
            continue
        found += [(batch_id, k) for k in SWEPT if won[k] and k not in done  # (its age: the
                  and claim(queue, batch_id, k, GRACE_MS)]  # server's clock, in the claim)
    if settled:
        client.zrem(OPEN_KEY, *settled)
    return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
