"""The @job registry, dispatch(), and signatures (a job name with arguments).

Only registered jobs run: a worker imports the modules its program lists under
`import:` and looks payload names up in the registry; nothing named in a payload
is ever imported. Signature lives here, beside Job: Job.s() makes one, and
Signature.dispatch() looks its name up in the registry. What a running job may ask
for (current_job, release, fail) is in context.py and importable from here too.
Imports context, dispatching, bulk (dispatch_many), payload, backend and keys.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar

from supervisor_q.jobs import bulk, dispatching
from supervisor_q.jobs.context import (  # noqa: F401  the job API, importable from here
    FailJob,
    JobContext,
    ReleaseJob,
    current_job,
    fail,
    release,
    reset_current_job,
    set_current_job,
)
from supervisor_q.jobs.options import JobOptions  # noqa: F401  (importable from here)
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.keys import JOBS_KEY, check_queue_name
from supervisor_q.queue.payload import DEFAULT_QUEUE

P = ParamSpec("P")
R = TypeVar("R")


class UnknownJob(LookupError):
    """A payload names a job no imported module registered."""


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
                 connection: str | None = None, after_commit: bool = False,
                 **kwargs: Any) -> str | None:
        """Queue this job; returns its id (None: a unique job's duplicate was dropped).
        after_commit: pushed once the current database transaction commits
        (dispatching.after_commit); returns the id it will have."""
        wait = bulk.check_delay(self.options.delay if delay is None else delay)
        if not after_commit:
            sent = bulk.send_one(self, args, kwargs, queue=queue, delay=wait,
                                 connection=connection)
            if sent is not None:
                return sent
        built = self.payload(args, kwargs, queue=queue)
        if after_commit:
            dispatching.after_commit(
                lambda: dispatching.send(built, delay=wait, connection=connection, job=self))
            return built.id
        return dispatching.send(built, delay=wait, connection=connection, job=self)

    def dispatch_if(self, condition: Any, *args: Any, **kwargs: Any) -> str | None:
        """dispatch() when condition (or condition(), if callable) is true, else None."""
        return self.dispatch(*args, **kwargs) if _holds(condition) else None

    def dispatch_unless(self, condition: Any, *args: Any, **kwargs: Any) -> str | None:
        """dispatch() when condition (or condition(), if callable) is false, else None."""
        return None if _holds(condition) else self.dispatch(*args, **kwargs)

    def on_failure(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: handler(reason, *args, **kwargs) runs once when this job fails for
        good, in a worker (also when the master failed it); returns handler."""
        self.options = dataclasses.replace(self.options, on_failure=handler)
        return handler

    def dispatch_many(self, items: Iterable[Any], *, delay: float | None = None,
                      queue: str | None = None, connection: str | None = None,
                      chunk: int = bulk.CHUNK) -> list[str | None]:
        """Queue this job once per item (a tuple or list of arguments, or a dict of
        keywords), chunk jobs per Redis call (jobs/bulk.py); their ids in order."""
        wait = bulk.check_delay(self.options.delay if delay is None else delay)
        return bulk.send_items(self, self.name, items, queue=queue, delay=wait,
                               connection=connection, chunk=chunk)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature (this job + arguments) for chain(), batch() and callbacks."""
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
                f"unknown job '{payloads.loggable(name, 200)}': no module in this worker's "
                "import list registers it"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._jobs)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs


REGISTRY = Registry()


def _holds(condition: Any) -> bool:
    return bool(condition() if callable(condition) else condition)


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
        unique_until: str = "finished", keep_result: float | None = None,
        on_failure: Callable[..., Any] | None = None) -> Any:
    """Register fn as a job named module:function (or name=); on_failure: see
    Job.on_failure."""
    if unique_until not in ("finished", "processing"):
        raise ValueError("unique_until is 'finished' or 'processing'")
    check_queue_name(queue)
    if retry_for is not None and (retry_until is not None or retry_for <= 0):
        raise ValueError("retry_for is seconds > 0, and excludes retry_until")
    options = JobOptions(queue=queue, tries=tries, timeout=timeout,
                         backoff=_backoff_tuple(backoff), retry_until=retry_until,
                         retry_for=retry_for,
                         max_exceptions=max_exceptions, fail_on_timeout=fail_on_timeout,
                         delay=delay, middleware=tuple(middleware), encrypted=encrypted,
                         unique_for=unique_for, unique_id=unique_id,
                         unique_until=unique_until, keep_result=keep_result,
                         on_failure=on_failure)
    if keep_result is not None and not 0 < keep_result < 10**9:
        raise ValueError("keep_result is seconds > 0")
    if not (tries is None or tries >= 1) or not (max_exceptions is None or max_exceptions >= 0):
        raise ValueError("tries must be >= 1 and max_exceptions >= 0")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be > 0")
    bulk.check_delay(delay)  # refused here, not at each dispatch

    def register(f: Callable[P, R]) -> Job[P, R]:
        registered = Job(f, name or f"{f.__module__}:{f.__qualname__}", options)
        (registry or REGISTRY).add(registered)
        return registered

    return register(fn) if fn is not None else register


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


def build_for(name: str, args: list | tuple, kwargs: dict[str, Any], *,
              registry: Registry | None = None, queue_name: str | None = None,
              extra: dict | None = None,
              connection: str | None = None) -> tuple[payloads.Payload, Job | None]:
    """A payload for a job name, with the job's declared options when registered in
    registry (default: this process's) or published by its workers."""
    registered = find_job(name, connection, registry)
    if registered is not None:
        return registered.payload(args, kwargs, queue=queue_name, extra=extra), registered
    return payloads.build(name, queue_name or DEFAULT_QUEUE, args, kwargs, extra=extra), None


def dispatch(target: str | Job, *args: Any, queue: str | None = None,
             delay: float | None = None, connection: str | None = None,
             registry: Registry | None = None, after_commit: bool = False,
             **kwargs: Any) -> str | None:
    """Queue a job by Job or by name ("module:function"); returns the job id
    (None when a unique job's duplicate was dropped). By name, the job's declared
    options apply, from this process's registry or else the one its workers published.
    after_commit: see Job.dispatch."""
    options = {"delay": delay, "queue": queue, "connection": connection,
               "after_commit": after_commit}
    if isinstance(target, Job):
        return target.dispatch(*args, **options, **kwargs)
    found = find_job(target, connection, registry)
    if found is not None:
        return found.dispatch(*args, **options, **kwargs)
    delay = bulk.check_delay(delay or 0.0)
    built = payloads.build(target, queue or DEFAULT_QUEUE, args, kwargs)
    if after_commit:
        dispatching.after_commit(
            lambda: dispatching.send(built, delay=delay or 0.0, connection=connection))
        return built.id
    return dispatching.send(built, delay=delay or 0.0, connection=connection)


def dispatch_if(condition: Any, target: str | Job, *args: Any, **kwargs: Any) -> str | None:
    """dispatch(target, ...) when condition (or condition(), if callable) is true."""
    return dispatch(target, *args, **kwargs) if _holds(condition) else None


def dispatch_unless(condition: Any, target: str | Job, *args: Any,
                    **kwargs: Any) -> str | None:
    """dispatch(target, ...) when condition (or condition(), if callable) is false."""
    return None if _holds(condition) else dispatch(target, *args, **kwargs)


def dispatch_many(target: str | Job, items: Iterable[Any], *, queue: str | None = None,
                  delay: float | None = None, connection: str | None = None,
                  registry: Registry | None = None,
                  chunk: int = bulk.CHUNK) -> list[str | None]:
    """dispatch() for many items at once: Job.dispatch_many by Job or by name."""
    if not isinstance(target, Job):
        found = find_job(target, connection, registry)
        if found is None:
            return bulk.send_items(None, target, items, queue=queue,
                                   delay=bulk.check_delay(delay or 0.0),
                                   connection=connection, chunk=chunk)
        target = found
    return target.dispatch_many(items, delay=delay, queue=queue, connection=connection,
                                chunk=chunk)



# -- signatures ----------------------------------------------------------------

@dataclass(frozen=True)
class Signature:
    """A job name with arguments: what chain(), batch() and callbacks take. Job.s()
    makes one; signature("module:function", ...) names a job this process cannot see."""

    job: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    delay: float = 0.0

    def on(self, queue: str) -> Signature:
        """The same signature on another queue."""
        return Signature(self.job, self.args, self.kwargs, queue, self.delay)

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "args": self.args, "kwargs": self.kwargs,
                "queue": self.queue, "delay": self.delay}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Signature:
        return cls(str(body["job"]), list(body.get("args") or []),
                   dict(body.get("kwargs") or {}), body.get("queue"),
                   float(body.get("delay") or 0.0))

    def dispatch(self, *, extra: dict | None = None, prepend: list[Any] | None = None,
                 connection: str | None = None,
                 registry: Registry | None = None) -> str | None:
        """Queue this job; prepend adds leading arguments (callbacks get their info)."""
        built, known = build_for(self.job, [*(prepend or []), *self.args], self.kwargs,
                                 registry=registry, queue_name=self.queue, extra=extra,
                                 connection=connection)
        return dispatching.send(built, delay=self.delay, connection=connection, job=known)


def signature(target: str | Job, *args: Any, **kwargs: Any) -> Signature:
    """A signature from a Job or a job name."""
    name = target.name if isinstance(target, Job) else target
    return Signature(name, list(args), dict(kwargs))
