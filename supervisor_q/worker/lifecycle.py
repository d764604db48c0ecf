"""The seams around one job run, where workflows, middleware and events plug in.

The worker calls these in order: prepare (verify, decrypt) -> invoke (unique lock,
events, middleware around the job function) -> succeeded | failed (a released job
needs nothing more). Kept apart from loop.py so job features grow here without
touching the worker loop. succeeded/failed never raise: the worker calls them outside
its own error handling, and a Redis hiccup in a chain or batch update must not kill it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis import RedisError

from supervisor_q.jobs import dispatching, encryption, middleware, unique
from supervisor_q.jobs.context import current_job
from supervisor_q.jobs.events import EVENTS, JobEvent
from supervisor_q.jobs.registry import REGISTRY, Job, JobOptions, Registry
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.batchack import BatchCount, Counted
from supervisor_q.queue.faults import is_topology_fault
from supervisor_q.queue.payload import (
    MAX_ID_LENGTH,
    MalformedPayload,
    Payload,
    build,
    decode,
    encode,
    loggable,
)
from supervisor_q.workflows import batches, chains

log = logging.getLogger("supervisor_q.lifecycle")


def bind(queue: RedisQueue) -> None:
    """The worker's connection, for chains, batches, locks and jobs dispatched in jobs."""
    dispatching.bind(queue)


# The events' live callback lists: an empty one costs the worker no call per job.
_looping, _before, _after = (EVENTS.registered(k) for k in ("looping", "before", "after"))


def check_keys() -> None:
    """At the worker's start: an encryption key that cannot be used is said once, not
    only by each encrypted job it fails."""
    problem = encryption.key_problem()
    if problem is not None:
        log.warning("%s: encrypted jobs will fail until it is set right", problem)


def sweep_batches(queue: RedisQueue) -> None:
    """Between jobs, every few seconds: dispatch the batch callbacks whose winner was lost
    (workflows/callbacks.py). A Redis fault is said in one line and met again at the next
    sweep; the worker goes on either way."""
    try:
        batches.sweep(queue)
    except RedisError as exc:  # Redis away: the worker's own calls say so, once an outage
        (log.debug if is_topology_fault(exc) else log.warning)(
            "batch callbacks sweep: Redis %s: %s (tried again in a few seconds)",
            type(exc).__name__, loggable(str(exc), 200))


def looping() -> None:
    """In the worker loop, before each look for a job (the `looping` event)."""
    if _looping:
        EVENTS.fire("looping")


def prepare(payload: Payload) -> Payload:
    """Turn a stored payload into the one the job runs with: check its signature,
    decrypt it. Raises MalformedPayload when it cannot run. The master's SETTLE_FAILED
    wrapper is not signed (the master may lack the key); the payload it carries is
    checked when it runs."""
    if payload.job == SETTLE_FAILED:
        return payload
    return encryption.open_payload(payload)


def _event(payload: Payload, attempts: int | None = None, **more: object) -> JobEvent:
    ctx = current_job()
    if attempts is None:
        attempts = ctx.attempts if ctx is not None and ctx.id == payload.id else 1
    return JobEvent(payload.id, payload.job, payload.queue, attempts, payload,
                    **more)  # type: ignore[arg-type]


def invoke(target: Job, payload: Payload) -> Any:
    """Run the job: free an until-processing unique lock, fire before/after, and run
    the function inside its middleware. Returns what the function returned."""
    if not (unique.UNIQUE in payload.extra or target.options.middleware
            or _before or _after):
        # nothing to wrap (a chain's or batch's job too: they act after it returned)
        return target.fn(*payload.args, **payload.kwargs)
    queue = dispatching.queue()
    unique.release_unique(queue, payload, "processing")
    EVENTS.fire("before", _event(payload))
    try:
        value = middleware.run(middleware.Call(target, payload, queue),
                               target.options.middleware)
    except BaseException as exc:
        EVENTS.fire("after", _event(payload, exception=exc))
        raise
    EVENTS.fire("after", _event(payload))
    return value


def _guarded(what: str, payload: Payload | None, action) -> None:  # noqa: ANN001
    try:
        action()
    except Exception:
        job_id = loggable(payload.id) if payload is not None else "?"
        log.exception("job %s: %s failed (the job's own outcome stands)", job_id, what)


def succeeded(payload: Payload, *, count_batch: bool = True) -> BatchCount | None:
    """After the job returned, before its ack: free the unique lock, queue the next
    job of its chain, count it in its batch. With count_batch False the batch count is
    returned instead, for the caller to send with the job's ack (then batch_counted)."""
    extra = payload.extra
    if not extra:  # no unique lock, chain or batch rides with this job
        return None
    if unique.UNIQUE in extra:
        queue = dispatching.queue()
        _guarded("unique unlock", payload,
                 lambda: unique.release_unique(queue, payload, "finished"))
    if chains.remaining(payload):  # (a lone batch job carries an empty chain)
        _guarded("chain", payload, lambda: chains.continue_chain(payload))
    if count_batch:
        _guarded("batch", payload, lambda: batches.job_succeeded(payload))
        return None
    batch_id = batches.batch_of(payload)
    return BatchCount(batch_id, payload.id) if batch_id else None


# Batch id -> whether it has a progress callback, as its counts in this process answered
# (bounded: forgotten wholesale past PROGRESS_KNOWN ids).
_has_progress: dict[str, bool] = {}
PROGRESS_KNOWN = 1000


def without_progress(batch_id: str) -> bool:
    """Whether the batch is known here to have no progress callback: its counts' answers
    then need not be read before the next job (only then/finally, which the last count
    wins, remain, and a later count cannot change what they see)."""
    return _has_progress.get(batch_id) is False


def batch_counted(results: Sequence[Counted],
                  retry: Callable[[Callable[[], None]], Any]) -> None:
    """After an ack that carried batch counts: dispatch the callbacks they won, each
    through retry (the worker's with_redis): a Redis fault on the way is waited out and
    the dispatch tried again, rather than the callbacks lost (one sent before the fault
    may then be sent twice: at least once, never none)."""
    for result in results:
        if result.counted:
            if len(_has_progress) >= PROGRESS_KNOWN:
                _has_progress.clear()
            _has_progress[result.batch_id] = result.has_progress
        if not (result.fire_then or result.fire_finally
                or (result.counted and result.has_progress)):
            continue  # nothing won: no callback to dispatch
        try:
            retry(lambda r=result: batches.counted(r))
        except Exception:
            log.exception("job %s: batch callbacks failed (the job's own outcome stands)",
                          loggable(result.job_id))


def failed(payload: Payload | None, reason: str, attempts: int | None = None) -> None:
    """After the job moved to the failed store (once per job): failing event, the
    job's on_failure handler, unique unlock, chain catch, batch failure."""
    if payload is None:  # undecodable: nothing in it can be trusted to act on
        return
    EVENTS.fire("failing", _event(payload, attempts, reason=reason))
    handler = REGISTRY.get(payload.job).options.on_failure if payload.job in REGISTRY else None
    if handler is not None:
        _guarded("on_failure handler", payload,
                 lambda: handler(reason, *payload.args, **payload.kwargs))
    queue = dispatching.queue()
    _guarded("unique unlock", payload,
             lambda: unique.release_unique(queue, payload, "finished"))
    _guarded("chain catch", payload, lambda: chains.catch_chain(payload, reason))
    _guarded("batch", payload, lambda: batches.job_failed(payload, reason))


# The internal job that settles, in a worker, a job that handback.settle failed.
SETTLE_FAILED = "supervisor_q:settle_failed"
# Its attempts, whatever the program's tries: a worker killed while it held the job
# (prefetched, unstarted) spends one, and the callbacks must still run once.
SETTLE_TRIES = 10


def failed_elsewhere(queue: RedisQueue, job_queue: str, raw: str, reason: str,
                     attempts: int) -> None:
    """For handback.settle (in the master, or the `work` guard), after it failed a job
    whose worker died. Neither imports the application's job modules, so it cannot fire
    the app's `failing` events nor dispatch callbacks with their declared options: it
    queues SETTLE_FAILED on the job's own queue, and a worker serving that queue (it
    has the registry) runs failed() there. Never raises."""
    try:
        built = build(SETTLE_FAILED, job_queue, [raw, reason, attempts], {},
                      tries=SETTLE_TRIES)
        queue.push(job_queue, built.id, encode(built))
    except (RedisError, ValueError) as exc:  # ValueError: a queue name no worker may serve
        log.warning("a job of queue %s failed, but its callbacks cannot be queued: %s",
                    loggable(job_queue), exc)


def _settle_failed(raw: str, reason: str, attempts: int) -> None:
    """In a worker: what the worker that lost the job would have done after failing it.
    The job's own payload is verified and decrypted here (the wrapper is the master's)."""
    failed(prepare(decode(raw)), reason, attempts)


def builtin(name: str) -> Job | None:
    """The internal job of that name (runs in every worker), or None."""
    if name != SETTLE_FAILED:
        return None
    return Job(_settle_failed, SETTLE_FAILED, JobOptions())


def admit(job_id: str, raw: str, registry: Registry) -> tuple[Payload, Job]:
    """The decoded payload and the registered job it names. Whatever is stored under
    a job's id (any bytes) either passes or raises MalformedPayload/UnknownJob, so a
    hostile payload is failed with its reason and never kills the worker."""
    if len(job_id) > MAX_ID_LENGTH:
        raise MalformedPayload(f"job id is longer than {MAX_ID_LENGTH} characters")
    if not raw:  # the id was ready, its payload hash entry missing or empty
        raise MalformedPayload("no payload")
    try:
        decoded = prepare(decode(raw))
    except MalformedPayload:
        raise
    except Exception as exc:  # e.g. RecursionError checking a deeply nested signature
        raise MalformedPayload(
            f"payload cannot be read: {type(exc).__name__}: {exc}") from None
    return decoded, builtin(decoded.job) or registry.get(decoded.job)
