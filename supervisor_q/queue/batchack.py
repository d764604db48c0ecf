"""A batch job's bookkeeping in the round trip of its ack: BATCH_SUCCEEDED (lua_limits),
or BATCH_SUCCEEDED_MANY for several jobs of one batch acked together (prefetch), sent
with the ACK or RESERVE that acks the job, in one pipeline on plain Redis and
Sentinel; on Redis Cluster the batch's keys (sq:{batch:<id>}:...) live in another slot
than the queue's, so each call goes to its own node's connection, all sent before any
reply is read (one round trip of waiting, not two). A mixin of RedisQueue (backend.py).
Imports keys and lua_limits (the connections are hotpath.py's: RedisQueue._eval_many).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.commands.core import Script

from supervisor_q.queue import lua_limits
from supervisor_q.queue.keys import batch_keys

Call = tuple[Script, list[str], list]


@dataclass(frozen=True)
class BatchCount:
    """A finished job to count in its batch, with its ack."""

    batch_id: str
    job_id: str


@dataclass(frozen=True)
class Counted:
    """BATCH_SUCCEEDED's answer for one job: whether it counted (now, or in a call whose
    reply was lost) and which callbacks this worker won and must dispatch."""

    batch_id: str
    job_id: str
    counted: bool
    fire_then: bool
    fire_finally: bool
    has_progress: bool


class BatchAck:
    """Builds the BATCH_SUCCEEDED calls that ride with an ack; reads their replies."""

    def script(self, source: str) -> Script:
        raise NotImplementedError

    def holder(self) -> str:
        raise NotImplementedError

    def token(self, queue: str, job_id: str) -> str:
        raise NotImplementedError

    def count_calls(self, queue: str, counts: Sequence[BatchCount]) -> list[Call]:
        """The calls that count these jobs, with their reservations' tokens (read before
        the ack forgets them), so a call sent again after a lost reply is recognised:
        one BATCH_SUCCEEDED_MANY per batch of two or more jobs (prefetch acks several at
        once), else one BATCH_SUCCEEDED. counted() reads the replies in this grouping."""
        calls: list[Call] = []
        for batch_id, group in _grouped(counts):
            if len(group) == 1:
                c = group[0]
                calls.append((self.script(lua_limits.BATCH_SUCCEEDED), batch_keys(batch_id),
                              [c.job_id, self.holder(), self.token(queue, c.job_id)]))
                continue
            args: list[Any] = [self.holder()]
            for c in group:
                args += [c.job_id, self.token(queue, c.job_id)]
            calls.append((self.script(lua_limits.BATCH_SUCCEEDED_MANY), batch_keys(batch_id),
                          args))
        return calls


def _grouped(counts: Sequence[BatchCount]) -> list[tuple[str, list[BatchCount]]]:
    """counts by batch, batches in the order of their first job."""
    groups: dict[str, list[BatchCount]] = {}
    for c in counts:
        groups.setdefault(c.batch_id, []).append(c)
    return list(groups.items())


def counted(counts: Sequence[BatchCount], replies: Sequence[Any]) -> list[Counted]:
    """Each count's answer from the replies of count_calls(counts), in counts' order."""
    found: dict[tuple[str, str], tuple[bool, ...]] = {}
    for (_, group), reply in zip(_grouped(counts), replies, strict=True):
        if len(group) == 1:
            found[group[0].batch_id, group[0].job_id] = tuple(bool(int(v)) for v in reply)
            continue
        digits = reply.decode() if isinstance(reply, bytes) else str(reply)
        for n, c in enumerate(group):
            found[c.batch_id, c.job_id] = tuple(d == "1" for d in digits[4 * n:4 * n + 4])
    return [Counted(c.batch_id, c.job_id, *found[c.batch_id, c.job_id]) for c in counts]
