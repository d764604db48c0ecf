"""A batch job's bookkeeping in the round trip of its ack: BATCH_SUCCEEDED (lua_limits)
sent with the ACK or RESERVE that acks the job, in one pipeline on plain Redis and
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
        """One BATCH_SUCCEEDED per job, with its reservation's token (read before the
        ack forgets it), so a retried call after a lost reply is recognised."""
        script = self.script(lua_limits.BATCH_SUCCEEDED)
        return [(script, batch_keys(c.batch_id),
                 [c.job_id, self.holder(), self.token(queue, c.job_id)]) for c in counts]


def counted(counts: Sequence[BatchCount], replies: Sequence[Any]) -> list[Counted]:
    return [Counted(c.batch_id, c.job_id, *(bool(int(v)) for v in reply))
            for c, reply in zip(counts, replies, strict=True)]
