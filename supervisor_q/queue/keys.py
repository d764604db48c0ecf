"""Every Redis key name, from one place.

All keys of one queue share the Cluster hash tag `{queue}`, so every Lua script
that touches one queue runs on the one node that owns it (one queue lives on one
shard); so do the keys of one batch (`{batch:<id>}`), and each unique lock and
middleware limit is its own tag. The global keys below are single keys in slots of
their own: only single-key commands (and one-key scripts) touch them, never a
pipeline or script that mixes them with queue keys (see cluster.py).
Imports nothing else from the package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "sq"
RESTART_KEY = f"{PREFIX}:restart"  # the deploy signal: a float timestamp
QUEUES_KEY = f"{PREFIX}:queues"  # set of every queue name ever pushed to (for failed listing)
JOBS_KEY = f"{PREFIX}:jobs"  # hash job name -> JSON declared options, published by workers
BATCH_INDEX_KEY = f"{PREFIX}:batches"  # zset batch id -> created-at (s), for listing and pruning
# zset batch id -> created-at (s): batches whose then / finally may still need dispatching
# by a sweep (workflows/callbacks.py), left once both are done
BATCH_OPEN_KEY = f"{PREFIX}:batches:open"
# What a queue may be called, wherever a name is given (config, dispatch, work, queue,
# failed --queue, @job): no braces (they are the Cluster hash tag), spaces or commas.
# config/schema.py keeps a copy (it imports nothing); a test keeps them equal.
QUEUE_PATTERN = r"^[A-Za-z0-9_.:-]+$"
_QUEUE_NAME = re.compile(QUEUE_PATTERN)


def check_queue_name(name: object) -> str:
    """name if it is a valid queue name, else ValueError with one clear line."""
    if not isinstance(name, str) or not _QUEUE_NAME.match(name) or name.endswith("\n"):
        shown = repr(name)[:80]
        raise ValueError(f"bad queue name {shown}: letters, digits and _ . : - only")
    return name


def periodic_key(program: str) -> str:
    """A periodic program's state (master/periodic.py): per entry the last handled due
    time (`ENTRY:due`) and the last firing (`ENTRY:last`, JSON)."""
    return f"{PREFIX}:periodic:{{{program}}}"


def batch_keys(batch_id: str) -> list[str]:
    """A batch's state hash, done set and failed set (one hash tag)."""
    tag = f"{PREFIX}:{{batch:{batch_id}}}"
    return [f"{tag}:state", f"{tag}:done", f"{tag}:failed"]


def unique_key(job_name: str, ident: str) -> str:
    """The lock of a unique job: one per job name and unique id."""
    return f"{PREFIX}:unique:{{{job_name}:{ident}}}"


def limit_key(kind: str, value: object) -> str:
    """A middleware limit's key (kind: funnel, overlap, throttle, circuit)."""
    return f"{PREFIX}:{kind}:{{{value}}}"


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue."""

    queue: str

    def _key(self, suffix: str) -> str:
        return f"{PREFIX}:{{{self.queue}}}:{suffix}"

    @property
    def ready(self) -> str:  # list of job ids, oldest at the head
        return self._key("ready")

    @property
    def notify(self) -> str:  # list of wake-up tokens that idle workers BLPOP
        return self._key("notify")

    @property
    def delayed(self) -> str:  # zset id -> available-at (ms since epoch, server clock)
        return self._key("delayed")

    @property
    def reserved(self) -> str:  # zset id -> reservation deadline (ms, server clock)
        return self._key("reserved")

    @property
    def payloads(self) -> str:  # hash id -> immutable JSON payload
        return self._key("payloads")

    @property
    def attempts(self) -> str:  # hash id -> attempts counted at reserve
        return self._key("attempts")

    @property
    def exceptions(self) -> str:  # hash id -> exceptions raised (for max_exceptions)
        return self._key("exceptions")

    @property
    def enqueued(self) -> str:  # hash id -> ms when it last became ready (for wait time)
        return self._key("enqueued")

    @property
    def holders(self) -> str:  # hash id -> token of the reservation that holds it (fencing)
        return self._key("holders")

    @property
    def failed(self) -> str:  # zset id -> failed-at (ms)
        return self._key("failed")

    @property
    def failed_records(self) -> str:  # hash id -> JSON failed record
        return self._key("failed_records")

    @property
    def running(self) -> str:  # hash id -> JSON: reserved_at (ms), host, pid (job lookup)
        return self._key("running")

    @property
    def recent(self) -> str:  # zset id -> ms its done record is forgotten (capped)
        return self._key("recent")

    @property
    def recent_ended(self) -> str:  # zset id -> ms its job finished: the cap's order
        return self._key("recent_ended")

    @property
    def recent_records(self) -> str:  # hash id -> JSON done record (queue/jobinfo.py)
        return self._key("recent_records")

    def chunk_marker(self, token: str) -> str:  # string, expiring: a bulk push landed
        return self._key(f"chunk:{token}")

    def all(self) -> list[str]:
        """Every key of the queue's waiting, delayed and reserved jobs, for `queue clear`."""
        return [self.ready, self.notify, self.delayed, self.reserved, self.payloads,
                self.attempts, self.exceptions, self.enqueued, self.holders, self.running]
