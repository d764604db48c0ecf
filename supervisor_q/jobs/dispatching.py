"""The one road from a built payload to Redis: fake, sync, unique lock, seal, push.

Every dispatch (Job.dispatch, dispatch(name), chains, batches, callbacks) ends in
send(), or, for plain jobs while neither the test fake nor sync mode is on, in
bulk.send_one / bulk.Sender's template road (they ask active_fake() and sync_enabled()
first), so the test fake and the sync mode see them all. It also knows which Redis
a running worker uses, so jobs dispatched from inside a job go to the same server.
Sync mode plugs in from above (worker/sync.py calls use_inline when supervisor_q is
imported); unique locks come from unique.py. Imports encryption, unique, payload,
backend and paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from supervisor_q.jobs import encryption, unique
from supervisor_q.paths import resolve_redis_url
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect

if TYPE_CHECKING:
    from supervisor_q.jobs.registry import Job

log = logging.getLogger("supervisor_q.dispatch")

SYNC_ENV = "SUPERVISOR_Q_SYNC"
# Seconds a producer waits for each Redis reply (a hung server fails a dispatch in
# seconds, not after the 30 s socket timeout of other clients).
TIMEOUT_ENV = "SUPERVISOR_Q_DISPATCH_TIMEOUT"
DEFAULT_TIMEOUT = 5.0

Dispatcher = Callable[[payloads.Payload], None]  # runs a payload instead of pushing it
# Takes an action to run when the current database transaction commits (or at once, when
# none is open); returns False when it does not apply here (contrib.sqlalchemy outside
# its session scope). Installed by supervisor_q.contrib.django / .sqlalchemy.
CommitHook = Callable[[Callable[[], object]], bool]


class Recorder(Protocol):
    """What testing.QueueFake implements: take a payload instead of pushing it."""

    def record(self, built: payloads.Payload, delay: float) -> None: ...


class _State:
    """Process-wide dispatch settings: the worker's queue, sync mode and the dispatcher
    that runs it, an active fake."""

    def __init__(self) -> None:
        self.bound: tuple[int, RedisQueue] | None = None  # (pid, queue) of this worker
        self.sync: bool | None = None  # None: read SUPERVISOR_Q_SYNC at call time
        self.inline: Dispatcher | None = None  # runs a job in sync mode (worker/sync.py)
        self.fake: Recorder | None = None
        self.commit_hooks: list[CommitHook] = []  # the latest installed is asked first


_state = _State()


def bind(queue: RedisQueue) -> None:
    """The worker's own connection: jobs dispatched inside jobs (and chains, batch
    callbacks) use it when no connection is named."""
    _state.bound = (os.getpid(), queue)


# One client per (url, pid): a connection must never cross a fork.
_queues: dict[tuple[str, int], RedisQueue] = {}


def queue_for(connection: str | None = None) -> RedisQueue:
    """The RedisQueue for a URL (resolved like every command: argument, env, embedded)."""
    url = resolve_redis_url(connection)
    key = (url, os.getpid())
    found = _queues.get(key)
    if found is None:
        found = _queues[key] = RedisQueue(connect(url, socket_timeout=dispatch_timeout()))
    return found


def dispatch_timeout() -> float:
    """SUPERVISOR_Q_DISPATCH_TIMEOUT (seconds > 0), else DEFAULT_TIMEOUT."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        value = -1.0
    if not 0 < value < 3600:
        raise ValueError(f"{TIMEOUT_ENV} must be seconds > 0 and < 3600, not {raw[:40]!r}")
    return value


def queue(connection: str | None = None) -> RedisQueue:
    """The RedisQueue for connection, else the bound worker queue, else the default."""
    bound = _state.bound
    if connection is None and bound is not None and bound[0] == os.getpid():
        return bound[1]
    return queue_for(connection)


def set_sync(enabled: bool | None) -> None:
    """Run dispatched jobs inline (True), push them (False), or follow the environment."""
    _state.sync = enabled


def use_inline(dispatcher: Dispatcher | None) -> None:
    """Install the function that runs a job in sync mode (worker/sync.py does, on import)."""
    _state.inline = dispatcher


def sync_enabled() -> bool:
    if _state.sync is not None:
        return _state.sync
    return os.environ.get(SYNC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def use_commit_hook(hook: CommitHook) -> None:
    """Install a transaction hook for after_commit dispatches, or ask it first again
    (contrib.sqlalchemy does at each session_dispatches block)."""
    if hook in _state.commit_hooks:
        _state.commit_hooks.remove(hook)
    _state.commit_hooks.insert(0, hook)


def after_commit(action: Callable[[], object]) -> None:
    """Run action when the current database transaction commits, through the first
    installed hook that applies (a rolled-back transaction never runs it). With the test
    fake or sync mode active and no hook installed, action runs at once."""
    for hook in _state.commit_hooks:
        if hook(action):
            return
    if _state.fake is not None or sync_enabled():
        action()
        return
    raise RuntimeError(
        "after_commit=True needs a transaction hook: add 'supervisor_q.contrib.django' to "
        "INSTALLED_APPS, or dispatch inside supervisor_q.contrib.sqlalchemy's "
        "session_dispatches(session)")


def set_fake(fake: Recorder | None) -> Recorder | None:
    """Install (or remove, with None) the test fake; returns the previous one."""
    previous, _state.fake = _state.fake, fake
    return previous


def active_fake() -> Recorder | None:
    return _state.fake


def send(built: payloads.Payload, *, delay: float = 0.0, connection: str | None = None,
         job: Job | None = None) -> str | None:
    """Queue built (or record it, or run it inline); returns its id, or None when a
    unique job's duplicate was dropped."""
    fake = _state.fake
    if fake is not None:
        fake.record(built, delay)
        return built.id
    if sync_enabled():
        if _state.inline is None:
            raise RuntimeError("sync mode: no inline dispatcher installed (import supervisor_q)")
        _state.inline(built)
        return built.id
    target = queue(connection)
    options = job.options if job is not None else None
    if options is not None and options.unique_for is not None:
        locked = unique.acquire_unique(target, job, built)
        if locked is None:
            log.info("dropped duplicate of unique job %s (%s)", built.job, built.id)
            return None
        built = locked
    raw = encryption.seal(built, encrypt=bool(options and options.encrypted))
    target.push(built.queue, built.id, raw, delay=delay)
    return built.id

