"""The @job registry, dispatch(), and what a running job may ask for (release, fail).

Only registered jobs run: a worker imports the modules its program lists under
`import:` and looks payload names up in the registry; nothing named in a payload
is ever imported. Imports payload, backend and paths only.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from supervisor_q.jobs import dispatching
from supervisor_q.paths import resolve_redis_url
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.keys import JOBS_KEY

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_QUEUE = "default"


class ReleaseJob(BaseException):
    """Raised by release(): put the job back, to run again after delay seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.delay = delay


class FailJob(BaseException):
    """Raised by fail(): move the job to the failed store now, no more attempts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownJob(LookupError):
    """A payload names a job no imported module registered."""


def release(delay: float = 0.0) -> None:
    """From inside a job: stop here and run this job again after delay seconds."""
    raise ReleaseJob(delay)


def fail(reason: str = "failed by the job") -> None:
    """From inside a job: stop here and fail this job without further attempts."""
    raise FailJob(reason)


@dataclass(frozen=True)
class JobContext:
    """What a running job can learn about itself through current_job()."""

    id: str
    name: str
    queue: str
    attempts: int
    payload: payloads.Payload


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "supervisor_q_current_job", default=None)


def current_job() -> JobContext | None:
    """The job running in this worker, or None outside a job."""
    return _current.get()


def set_current_job(context: JobContext | None) -> contextvars.Token:
    return _current.set(context)


def reset_current_job(token: contextvars.Token) -> None:
    _current.reset(token)


@dataclass(frozen=True)
class JobOptions:
    """Per-job settings carried in each payload; None means the program's setting."""

    queue: str = DEFAULT_QUEUE
    tries: int | None = None
    timeout: float | None = None
    backoff: tuple[int, ...] | None = None
    # epoch seconds, or a callable returning them, evaluated at each dispatch; beats tries
    retry_until: float | Callable[[], float] | None = None
    retry_for: float | None = None  # seconds from dispatch; the relative retry_until
    max_exceptions: int | None = None
    fail_on_timeout: bool = False
    delay: float = 0.0
    middleware: tuple[Any, ...] = ()  # see middleware.py / controls.py
    encrypted: bool = False  # args, kwargs and extras stored encrypted (encryption.py)
    unique_for: float | None = None  # seconds; set = unique job (controls.acquire_unique)
    unique_id: Callable[..., Any] | None = None  # (*args, **kwargs) -> id; default: none
    unique_until: str = "finished"  # or "processing": when the unique lock is freed

    def retry_deadline(self, dispatched_at: float) -> float | None:
        """The epoch retry_until of a job dispatched at dispatched_at (None: tries rule)."""
        if self.retry_for is not None:
            return dispatched_at + self.retry_for
        if callable(self.retry_until):
            return float(self.retry_until())
        return self.retry_until

    def declared(self) -> dict[str, Any]:
        """The JSON-able options, as workers publish them for dispatch by name elsewhere.
        A callable retry_until or middleware cannot cross processes and is left out;
        unique_id says only whether a function computes the unique id."""
        return {"queue": self.queue, "tries": self.tries, "timeout": self.timeout,
                "backoff": list(self.backoff) if self.backoff is not None else None,
                "retry_until": None if callable(self.retry_until) else self.retry_until,
                "retry_for": self.retry_for, "max_exceptions": self.max_exceptions,
                "fail_on_timeout": self.fail_on_timeout, "delay": self.delay,
                "encrypted": self.encrypted, "unique_for": self.unique_for,
                "unique_id": self.unique_id is not None, "unique_until": self.unique_until}

    @classmethod
    def from_declared(cls, body: dict[str, Any]) -> JobOptions:
        """Options from a published declaration (see declared())."""
        backoff = body.get("backoff")
        return cls(queue=str(body.get("queue") or DEFAULT_QUEUE), tries=body.get("tries"),
                   timeout=body.get("timeout"),
                   backoff=tuple(backoff) if isinstance(backoff, list) and backoff else None,
                   retry_until=body.get("retry_until"), retry_for=body.get("retry_for"),
                   max_exceptions=body.get("max_exceptions"),
                   fail_on_timeout=bool(body.get("fail_on_timeout")),
                   delay=float(body.get("delay") or 0.0),
                   encrypted=bool(body.get("encrypted")), unique_for=body.get("unique_for"),
                   unique_until=str(body.get("unique_until") or "finished"))


class Job(Generic[P, R]):
    """A registered job: call it to run inline, .dispatch() to queue it."""

    def __init__(self, fn: Callable[P, R], name: str, options: JobOptions) -> None:
        self.fn = fn
        self.name = name
        self.options = options
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Job {self.name} queue={self.options.queue}>"

    def payload(self, args: tuple | list, kwargs: dict, *, queue: str | None = None,
                extra: dict | None = None) -> payloads.Payload:
        """The payload this job would be queued with."""
        o = self.options
        return payloads.build(
            self.name, queue or o.queue, args, kwargs, timeout=o.timeout, tries=o.tries,
            backoff=list(o.backoff) if o.backoff is not None else None,
            retry_until=o.retry_deadline(time.time()), max_exceptions=o.max_exceptions,
            fail_on_timeout=o.fail_on_timeout, extra=extra)

    def dispatch(self, *args: Any, delay: float | None = None, queue: str | None = None,
                 connection: str | None = None, **kwargs: Any) -> str | None:
        """Queue this job; returns its id (None: a unique job's duplicate was dropped).
        delay/queue/connection are dispatch options."""
        built = self.payload(args, kwargs, queue=queue)
        wait = self.options.delay if delay is None else delay
        return dispatching.send(built, delay=wait, connection=connection, job=self)

    def s(self, *args: Any, **kwargs: Any) -> Any:
        """A signature (this job + arguments) for chain(), batch() and callbacks."""
        from supervisor_q.workflows.chains import Signature

        return Signature(self.name, list(args), dict(kwargs))


class Registry:
    """Job name -> Job. One per process; the worker reads it after importing modules."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        existing = self._jobs.get(job.name)
        if existing is not None and existing.fn.__qualname__ != job.fn.__qualname__:
            raise ValueError(f"job name {job.name!r} is registered twice")
        self._jobs[job.name] = job

    def get(self, name: str) -> Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownJob(
                f"unknown job {name!r}: no module in this worker's import list registers it"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._jobs)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs


REGISTRY = Registry()


def _backoff_tuple(backoff: int | list[int] | tuple[int, ...] | None) -> tuple[int, ...] | None:
    if backoff is None:
        return None
    if isinstance(backoff, int):
        return (backoff,)
    values = tuple(int(v) for v in backoff)
    if not values or any(v < 0 for v in values):
        raise ValueError("backoff must be a non-negative int or a non-empty list of them")
    return values


def job(fn: Callable[P, R] | None = None, *, name: str | None = None,
        queue: str = DEFAULT_QUEUE, tries: int | None = None, timeout: float | None = None,
        backoff: int | list[int] | None = None,
        retry_until: float | Callable[[], float] | None = None,
        retry_for: float | None = None, max_exceptions: int | None = None,
        fail_on_timeout: bool = False,
        delay: float = 0.0, registry: Registry | None = None,
        middleware: list[Any] | tuple[Any, ...] = (), encrypted: bool = False,
        unique_for: float | None = None, unique_id: Callable[..., Any] | None = None,
        unique_until: str = "finished") -> Any:
    """Register fn as a job named module:function (or name=)."""
    if unique_until not in ("finished", "processing"):
        raise ValueError("unique_until is 'finished' or 'processing'")
    if retry_for is not None and (retry_until is not None or retry_for <= 0):
        raise ValueError("retry_for is seconds > 0, and excludes retry_until")
    options = JobOptions(queue=queue, tries=tries, timeout=timeout,
                         backoff=_backoff_tuple(backoff), retry_until=retry_until,
                         retry_for=retry_for,
                         max_exceptions=max_exceptions, fail_on_timeout=fail_on_timeout,
                         delay=delay, middleware=tuple(middleware), encrypted=encrypted,
                         unique_for=unique_for, unique_id=unique_id,
                         unique_until=unique_until)
    if tries is not None and tries < 1:
        raise ValueError("tries must be >= 1")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be > 0")

    def register(f: Callable[P, R]) -> Job[P, R]:
        registered = Job(f, name or f"{f.__module__}:{f.__qualname__}", options)
        (registry or REGISTRY).add(registered)
        return registered

    return register(fn) if fn is not None else register


# One client per (url, pid): a connection must never cross a fork.
_queues: dict[tuple[str, int], RedisQueue] = {}


def queue_for(connection: str | None = None) -> RedisQueue:
    """The RedisQueue for a URL (resolved like every command: argument, env, embedded)."""
    url = resolve_redis_url(connection)
    key = (url, os.getpid())
    found = _queues.get(key)
    if found is None:
        found = _queues[key] = RedisQueue(connect(url))
    return found


def push_payload(built: payloads.Payload, *, delay: float = 0.0,
                 connection: str | None = None) -> str:
    """Encode and queue a payload; returns its id."""
    queue_for(connection).push(built.queue, built.id, payloads.encode(built), delay=delay)
    return built.id


# -- the registry in Redis: declared options for dispatch by name anywhere -------

# A declaration read from Redis is trusted this long in a dispatching process, so a
# burst of dispatches by name costs one HGET, and a redeploy is seen soon after.
DECLARED_CACHE_SECONDS = 5.0
_declared_cache: dict[tuple[int, str], tuple[float, JobOptions]] = {}


def publish_registry(queue: RedisQueue, registry: Registry) -> None:
    """Publish every registered job's declared options (a worker, once at start), so a
    process that cannot import the job's module still dispatches it as declared."""
    fields = {name: json.dumps(registry.get(name).options.declared())
              for name in registry.names()}
    if fields:
        queue.client.hset(JOBS_KEY, mapping=fields)


def _unique_id_elsewhere(name: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"job {name} computes its unique id with a function, which only "
                         "a process that imports its module can run: dispatch it from there")
    return refuse


def _cannot_run_here(*args: Any, **kwargs: Any) -> Any:
    raise UnknownJob("this job is registered in another process only: dispatch it instead")


def declared_job(name: str, queue: RedisQueue) -> Job | None:
    """A stand-in for a job no module here registers, with the options its workers
    published (None: no worker has registered it yet)."""
    key = (id(queue), name)
    cached = _declared_cache.get(key)
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        options = cached[1]
    else:
        raw = queue.client.hget(JOBS_KEY, name)
        if raw is None:
            return None
        try:
            body = json.loads(raw)
            options = JobOptions.from_declared(body)
        except (ValueError, TypeError, AttributeError):
            return None  # not written by a worker: treat the job as undeclared
        if body.get("unique_id"):
            options = dataclasses.replace(options, unique_id=_unique_id_elsewhere(name))
        _declared_cache[key] = (now + DECLARED_CACHE_SECONDS, options)
    return Job(_cannot_run_here, name, options)


def find_job(name: str, connection: str | None = None,
             registry: Registry | None = None) -> Job | None:
    """The job registered here under name, else its declared stand-in, else None."""
    known = registry or REGISTRY
    if name in known:
        return known.get(name)
    if dispatching.active_fake() is not None or dispatching.sync_enabled():
        return None  # no Redis to ask: the test fake and sync mode see only this process
    return declared_job(name, dispatching.queue(connection))


def dispatch(target: str | Job, *args: Any, queue: str | None = None,
             delay: float | None = None, connection: str | None = None,
             registry: Registry | None = None, **kwargs: Any) -> str | None:
    """Queue a job by Job or by name ("module:function"); returns the job id
    (None when a unique job's duplicate was dropped). By name, the job's declared
    options apply, from this process's registry or else the one its workers published."""
    if isinstance(target, Job):
        return target.dispatch(*args, delay=delay, queue=queue, connection=connection, **kwargs)
    found = find_job(target, connection, registry)
    if found is not None:
        return found.dispatch(*args, delay=delay, queue=queue, connection=connection, **kwargs)
    built = payloads.build(target, queue or DEFAULT_QUEUE, args, kwargs)
    return dispatching.send(built, delay=delay or 0.0, connection=connection)

