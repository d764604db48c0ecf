"""A finished job whose ack waits to ride with the next reserve (loop.py, ahead.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from supervisor_q.queue.batchack import BatchCount
from supervisor_q.queue.jobinfo import Done
from supervisor_q.worker import lifecycle


@dataclass
class Pending:
    """A finished job whose ack rides with the next reserve."""

    queue: str
    id: str | Done  # with its done record for job lookup
    count: BatchCount | None = None  # its batch count, sent with the ack (batchack.py)
    at: float = 0.0  # monotonic time it finished
    # Its count's answer may be needed before the next job: its batch is not known here
    # to have no progress callback (yet: waiting() looks again while True).
    waits: bool = field(init=False)

    def __post_init__(self) -> None:
        self.waits = self.count is not None and not lifecycle.without_progress(
            self.count.batch_id)


def waiting(pending: list[Pending]) -> bool:
    """Whether a count among pending finished jobs is of a batch not known here to have
    no progress callback. Each job's was looked up when it finished and is looked up
    again here only while unknown: an answer since may have told."""
    unknown = [p for p in pending if p.waits]
    for p in unknown:
        p.waits = p.count is not None and not lifecycle.without_progress(p.count.batch_id)
    return any(p.waits for p in unknown)
