"""The seams around one job run, where workflows, middleware and events plug in.

The worker calls these in order: prepare (verify, decrypt) -> invoke (unique lock,
events, middleware around the job function) -> succeeded | failed | released.
Kept apart from worker.py so job features grow here without touching the worker
loop. succeeded/failed/released never raise: the worker calls them outside its own
error handling, and a Redis hiccup in a chain or batch update must not kill it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from supervisor_q import controls, dispatching, encryption, middleware
from supervisor_q.backend import RedisQueue
from supervisor_q.events import EVENTS, JobEvent
from supervisor_q.jobs import current_job
from supervisor_q.payload import MalformedPayload, Payload, decode

if TYPE_CHECKING:
    from supervisor_q.jobs import Job

log = logging.getLogger("supervisor_q.lifecycle")


def bind(queue: RedisQueue) -> None:
    """The worker's connection, for chains, batches, locks and jobs dispatched in jobs."""
    dispatching.bind(queue)


def looping() -> None:
    """In the worker loop, before each look for a job (the `looping` event)."""
    EVENTS.fire("looping")


def prepare(payload: Payload) -> Payload:
    """Turn a stored payload into the one the job runs with: check its signature,
    decrypt it. Raises MalformedPayload when it cannot run."""
    return encryption.open_payload(payload)


def _event(payload: Payload, **more: object) -> JobEvent:
    ctx = current_job()
    attempts = ctx.attempts if ctx is not None and ctx.id == payload.id else 1
    return JobEvent(payload.id, payload.job, payload.queue, attempts, payload,
                    **more)  # type: ignore[arg-type]


def invoke(target: Job, payload: Payload) -> None:
    """Run the job: free an until-processing unique lock, fire before/after, and run
    the function inside its middleware."""
    if not (payload.extra or target.options.middleware or EVENTS.wants("before")
            or EVENTS.wants("after")):
        target.fn(*payload.args, **payload.kwargs)  # the plain job: nothing to wrap
        return
    queue = dispatching.queue()
    controls.release_unique(queue, payload, "processing")
    EVENTS.fire("before", _event(payload))
    try:
        middleware.run(middleware.Call(target, payload, queue), target.options.middleware)
    except BaseException as exc:
        EVENTS.fire("after", _event(payload, exception=exc))
        raise
    EVENTS.fire("after", _event(payload))


def _guarded(what: str, payload: Payload | None, action) -> None:  # noqa: ANN001
    try:
        action()
    except Exception:
        job_id = payload.id if payload is not None else "?"
        log.exception("job %s: %s failed (the job's own outcome stands)", job_id, what)


def succeeded(payload: Payload) -> None:
    """After the job returned, before its ack: free the unique lock, queue the next
    job of its chain, count it in its batch."""
    if not payload.extra:  # no unique lock, chain or batch rides with this job
        return
    from supervisor_q import batches, workflows

    queue = dispatching.queue()
    _guarded("unique unlock", payload,
             lambda: controls.release_unique(queue, payload, "finished"))
    _guarded("chain", payload, lambda: workflows.continue_chain(payload))
    _guarded("batch", payload, lambda: batches.job_succeeded(payload))


def failed(payload: Payload | None, reason: str) -> None:
    """After the job moved to the failed store: failing event, unique unlock, chain
    catch, batch failure."""
    if payload is None:  # undecodable: nothing in it can be trusted to act on
        return
    from supervisor_q import batches, workflows

    EVENTS.fire("failing", _event(payload, reason=reason))
    queue = dispatching.queue()
    _guarded("unique unlock", payload,
             lambda: controls.release_unique(queue, payload, "finished"))
    _guarded("chain catch", payload, lambda: workflows.catch_chain(payload, reason))
    _guarded("batch", payload, lambda: batches.job_failed(payload, reason))


def released(payload: Payload, delay: float) -> None:
    """After the job was put back for another attempt (nothing to do yet)."""


def failed_elsewhere(queue: RedisQueue, raw: str, reason: str) -> None:
    """For the master, after it failed a job whose child died (handback.settle): run
    the chain catch, batch failure and unique unlock the child could not. Never raises.
    (App-registered `failing` events do not fire there: the master imports no jobs.)"""
    try:
        payload = prepare(decode(raw))
    except MalformedPayload:
        return
    bind(queue)
    failed(payload, reason)
