"""Unique jobs: a lock taken at dispatch (SET NX), freed when the job starts
(unique_until="processing") or ends for good ("finished"), or after unique_for.

The lock's key and holder ride in the payload (extra["unique"]), so the worker that
runs the job frees exactly the lock its dispatch took. Imports keys, lua, backend
and payload.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from supervisor_q.queue import lua_limits
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.keys import unique_key as _lock_key
from supervisor_q.queue.payload import Payload

if TYPE_CHECKING:
    from supervisor_q.jobs.registry import Job

UNIQUE = "unique"  # payload.extra field: {"key": lock key, "until": "finished"|"processing"}


def unique_key(job: Job, args: list, kwargs: dict) -> str:
    """The lock key of job called with args and kwargs (its unique_id function decides)."""
    make = job.options.unique_id
    ident = "" if make is None else str(make(*args, **kwargs))
    return _lock_key(job.name, ident)


def acquire_unique(queue: RedisQueue, job: Job, built: Payload) -> Payload | None:
    """Take the unique lock for built; the payload that remembers it, or None if another
    job holds the lock (a duplicate)."""
    key = unique_key(job, built.args, built.kwargs)
    seconds = job.options.unique_for or 0
    ok = queue.client.set(key, built.id, nx=True, px=int(seconds * 1000) or None)
    if not ok:
        return None
    extra = {**built.extra, UNIQUE: {"key": key, "until": job.options.unique_until}}
    return replace(built, extra=extra)


def release_unique(queue: RedisQueue, payload: Payload, stage: str) -> None:
    """Free the unique lock of payload if it is held for this stage and by this job."""
    spec = payload.extra.get(UNIQUE)
    if not isinstance(spec, dict) or spec.get("until") != stage:
        return
    queue.script(lua_limits.UNLOCK)(keys=[str(spec.get("key"))], args=[payload.id])
