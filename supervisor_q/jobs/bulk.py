"""Bulk dispatch: many jobs in chunks, one script call per chunk of one queue.

Job.dispatch_many, registry.dispatch_many and batch dispatch build each payload as a
single dispatch does, then hand it to a Sender, which seals it (encryption) and
queues it with the others of its queue, CHUNK at a time (RedisQueue.push_many: a chunk
lands whole or not at all). The slower path, one send() per job, serves what needs
per-job work in Redis or outside it: the test fake, sync mode, and unique jobs (their
lock is a script on a key of its own). Delays apply per job in both paths.

If the connection breaks, BulkDispatchError says exactly which ids are queued
(landed), which are not (not_landed), which Redis could not be asked about
(unknown: the chunk lost with the server), and how many items of the iterable were
taken (items from `taken` on were not built at all). Imports dispatching,
encryption and queue.bulk (ChunkLost).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import redis

from supervisor_q.jobs import bulkbuild, dispatching, encryption
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.bulk import ChunkLost
from supervisor_q.queue.payload import DEFAULT_QUEUE, MAX_SECONDS

if TYPE_CHECKING:
    from supervisor_q.jobs.options import JobOptions
    from supervisor_q.jobs.registry import Job
    from supervisor_q.queue.backend import RedisQueue
    from supervisor_q.queue.payload import Payload

CHUNK = 1000  # jobs per script call


class BulkDispatchError(redis.ConnectionError):
    """A bulk dispatch broke off; see the module's docstring for the four fields.
    batch_id: the batch the jobs were for (batch dispatch or Batch.add), else None;
    batch: a handle on it (workflows/batches.py sets both)."""

    def __init__(self, message: str, landed: list[str], not_landed: list[str],
                 unknown: list[str], taken: int) -> None:
        super().__init__(f"{message} ({len(landed)} job(s) queued, {len(not_landed)} not, "
                         f"{len(unknown)} unknown; {taken} item(s) taken)")
        self.landed = landed
        self.not_landed = not_landed
        self.unknown = unknown
        self.taken = taken
        self.batch_id: str | None = None
        self.batch: Any = None
        self.uncounted = 0  # jobs of not_landed taken off the batch's counts


_NO_KWARGS: dict = {}  # shared, never written: the payload builders copy what they keep


def split(item: Any) -> tuple[list | tuple, dict]:
    """An item of dispatch_many: a tuple or list of arguments, or a dict of keywords
    (not copied: Job.payload copies them, a Template only serialises them)."""
    if isinstance(item, tuple | list):
        return item, _NO_KWARGS
    if isinstance(item, dict):
        return (), item
    raise TypeError(f"dispatch_many takes tuples or lists of arguments or dicts of "
                    f"keywords, not {type(item).__name__}")


def check_delay(delay: Any) -> float:
    """A dispatch's delay: a real number of seconds >= 0, else one clear ValueError
    (before anything is sent)."""
    if (isinstance(delay, bool) or not isinstance(delay, numbers.Real)
            or not 0 <= delay <= MAX_SECONDS):
        raise ValueError(f"delay must be a number of seconds from 0 to {MAX_SECONDS:.0e}, "
                         f"not {delay!r:.40}")
    return float(delay)


def check_chunk(chunk: Any) -> int:
    """chunk as given to dispatch_many: a whole number >= 1, else one clear ValueError."""
    if isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1:
        raise ValueError(f"chunk must be a whole number >= 1, not {chunk!r:.40}")
    return int(chunk)


class Sender:
    """Collects built payloads per (connection, queue) and pushes them chunk by chunk.
    hold: send nothing before close() (a batch counts its jobs in between, and a bad
    item raises before anything is counted or queued)."""

    def __init__(self, connection: str | None = None, chunk: int = CHUNK, *,
                 hold: bool = False) -> None:
        self.connection = connection
        self.chunk = check_chunk(chunk)
        self.hold = hold
        self._later: list[tuple[int, Payload, float, Job | None]] = []
        self.ids: list[str | None] = []
        self.landed: list[str] = []
        self.taken = 0
        self._groups: dict[tuple[int, str], tuple[RedisQueue, list[tuple[str, str, float]]]] = {}
        self._looked_up = False
        self._queue: RedisQueue | None = None
        self._templates: dict[tuple[str, str | None], bulkbuild.Template | bool] = {}
        self._signed: bool | None = None  # a signing key is set (read at the first job)
        self._ids = bulkbuild.job_ids(min(chunk, CHUNK))

    def add(self, built: Payload, delay: float = 0.0, job: Job | None = None) -> None:
        """Queue built (or hold it for its queue's next chunk)."""
        self.taken += 1
        options = job.options if job is not None else None
        target = self._target()
        if target is None or (options is not None and options.unique_for is not None):
            if self.hold:
                self._later.append((len(self.ids), built, delay, job))
                self.ids.append(built.id)
                return
            sent = self._send_one(built, delay, job)
            self.ids.append(sent)
            if sent is not None:
                self.landed.append(sent)
            return
        raw = encryption.seal(built, encrypt=bool(options and options.encrypted))
        self._hold(target, built.queue, built.id, raw, delay)

    def add_call(self, job: Job | None, name: str, args: list | tuple, kwargs: dict, *,
                 queue: str | None = None, delay: float = 0.0,
                 extra: dict | None = None, extra_json: str | None = None) -> None:
        """Queue job (None: known by name only) with these arguments: from its Template
        (bulkbuild.py) when it can take the fast road, else built and sealed as
        dispatch() does. extra_json: extra already serialised (shared by many jobs)."""
        key = (name, queue)
        found = self._templates.get(key)
        if found is None:
            found = self._templates[key] = self._template(job, name, queue)
        if found is False:
            built = (job.payload(args, kwargs, queue=queue, extra=extra) if job is not None
                     else payloads.build(name, queue or DEFAULT_QUEUE, args, kwargs,
                                         extra=extra))
            self.add(built, delay, job)
            return
        self.taken += 1
        job_id = next(self._ids)
        self._hold(self._queue, found.queue, job_id,  # type: ignore[arg-type]
                   found.render(job_id, args, kwargs, extra_json or extra), delay)

    def _template(self, job: Job | None, name: str, queue: str | None
                  ) -> bulkbuild.Template | bool:
        """The job's Template, or False: it goes the per-job way (the fake or sync mode,
        a unique or encrypted job, a signing key set: read once per call)."""
        options = job.options if job is not None else None
        if self._target() is None or (options is not None and (
                options.unique_for is not None or options.encrypted)):
            return False
        if self._signed is None:
            self._signed = encryption.signing_enabled()
        if self._signed:
            return False
        return bulkbuild.template(job.name if job is not None else name, queue, options)

    def _hold(self, target: RedisQueue, queue: str, job_id: str, raw: str,
              delay: float) -> None:
        key = (id(target), queue)
        group = self._groups.setdefault(key, (target, []))[1]
        group.append((job_id, raw, delay))
        self.ids.append(job_id)
        if len(group) >= self.chunk and not self.hold:
            self._flush(key)

    def _target(self) -> RedisQueue | None:
        """The queue to push to (None: the fake or sync mode takes each job), looked up
        at the first job: the setting holds for the whole call."""
        if not self._looked_up:
            fake_or_sync = dispatching.active_fake() is not None or dispatching.sync_enabled()
            self._queue = None if fake_or_sync else dispatching.queue(self.connection)
            self._looked_up = True
        return self._queue

    def close(self) -> list[str | None]:
        """Push what is held; the ids in the order added (None: a dropped duplicate)."""
        self.hold = False
        later, self._later = self._later, []
        for n, (at, built, delay, job) in enumerate(later):
            sent = self._send_one(built, delay, job, [b.id for _, b, _, _ in later[n + 1:]])
            self.ids[at] = sent
            if sent is not None:
                self.landed.append(sent)
        for key in list(self._groups):
            while len(self._groups[key][1]) > self.chunk:  # held whole: CHUNK at a time
                target, group = self._groups[key]
                self._groups[key] = (target, group[self.chunk:])
                self._push(key[1], target, group[:self.chunk])
            self._flush(key)
        return self.ids

    def closed_on(self, error: Exception) -> None:
        """A bad item raised error: queue the items before it, and let error say which
        they are (error.landed: their ids, in order; error.taken: items taken from the
        iterable, the bad one included)."""
        self.close()
        error.landed = list(self.landed)  # type: ignore[attr-defined]
        error.taken = self.taken  # type: ignore[attr-defined]

    def _send_one(self, built: Payload, delay: float, job: Job | None,
                  rest: list[str] | None = None) -> str | None:
        try:
            return dispatching.send(built, delay=delay, connection=self.connection, job=job)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._broke(exc, rest or [], [built.id])

    def _flush(self, key: tuple[int, str]) -> None:
        target, group = self._groups.pop(key)
        self._push(key[1], target, group)

    def _push(self, queue: str, target: RedisQueue, group: list[tuple[str, str, float]]
              ) -> None:
        try:
            target.push_many(queue, group)
        except ChunkLost as exc:
            ids = [job_id for job_id, _, _ in group]
            if exc.landed:
                self.landed += ids
            self._broke(exc, [] if exc.landed is not False else ids,
                        ids if exc.landed is None else [])
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # before the chunk
            self._broke(exc, [job_id for job_id, _, _ in group], [])
        self.landed += [job_id for job_id, _, _ in group]

    def _broke(self, exc: Exception, not_landed: list[str], unknown: list[str]) -> None:
        held = [job_id for _, group in self._groups.values() for job_id, _, _ in group]
        raise BulkDispatchError(str(exc), list(self.landed), not_landed + held, unknown,
                                self.taken) from exc


def send_all(items: Iterable[tuple[Payload, float, Job | None]], *,
             connection: str | None = None, chunk: int = CHUNK) -> list[str | None]:
    """Queue every (payload, delay, job) in chunks; their ids, in order. If building an
    item raises, the items before it are queued, then the error is raised, carrying
    their ids (Sender.closed_on)."""
    sender = Sender(connection, chunk)
    try:
        for built, delay, job in items:
            sender.add(built, delay, job)
    except Exception as exc:
        sender.closed_on(exc)
        raise
    return sender.close()


def send_items(job: Job | None, name: str, items: Iterable[Any], *, queue: str | None = None,
               delay: float = 0.0, connection: str | None = None,
               chunk: int = CHUNK) -> list[str | None]:
    """dispatch_many's road: one job per item (see split) through Sender.add_call; their
    ids in order. A bad item raises after the items before it are queued, the error
    carrying their ids (Sender.closed_on)."""
    sender = Sender(connection, chunk)
    try:
        for item in items:
            args, kwargs = split(item)
            sender.add_call(job, name, args, kwargs, queue=queue, delay=delay)
    except Exception as exc:
        sender.closed_on(exc)
        raise
    return sender.close()


# (job name, queue) -> (the options it was made from, its Template), for send_one
_singles: dict[tuple[str, str | None], tuple[JobOptions, bulkbuild.Template]] = {}


def send_one(job: Job, args: tuple | list, kwargs: dict, *, queue: str | None,
             delay: float, connection: str | None) -> str | None:
    """A single dispatch() on the fast road: its payload from the job's Template (the
    same bytes, without a Payload built and sealed), pushed as send() would; None when
    the job must go the per-job way (the fake, sync mode, a unique or encrypted job, a
    signing key set)."""
    o = job.options
    if (o.unique_for is not None or o.encrypted or dispatching.active_fake() is not None
            or dispatching.sync_enabled() or encryption.signing_enabled()):
        return None
    key = (job.name, queue)
    found = _singles.get(key)
    if found is None or found[0] is not o:
        found = _singles[key] = (o, bulkbuild.template(job.name, queue, o))
    made = found[1]
    job_id = payloads.new_job_id()
    raw = made.render(job_id, args, kwargs)
    dispatching.queue(connection).push(made.queue, job_id, raw, delay=delay)
    return job_id
