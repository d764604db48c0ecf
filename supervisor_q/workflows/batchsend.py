"""Building a batch's jobs before anything is counted or queued.

build() turns each chain of a batch into its first job's payload (carrying the rest of
the chain) in a Sender that holds them all until close() (jobs/bulk.py), so a bad item
raises before the batch counts anything. Imports bulk, registry, payload and chains.
"""

from __future__ import annotations

from supervisor_q.jobs import bulk
from supervisor_q.jobs.registry import Job, find_job
from supervisor_q.queue.payload import to_json
from supervisor_q.workflows.chains import BATCH, Chain


def build(chains: list[Chain], batch_id: str, connection: str | None) -> bulk.Sender:
    """Build each chain's first job (carrying the rest) into a Sender that holds them
    all (jobs/bulk.py: pushed in chunks per queue at close, a batch of 10,000 jobs is
    ten script calls); a bad item raises here, before anything is counted or queued.
    Each job name is looked up once per call."""
    sender = bulk.Sender(connection, hold=True)
    known: dict[str, Job | None] = {}
    lone = {BATCH: batch_id}  # the extra of a one-job chain without catch (no rest)
    lone_json = to_json(lone, "batch")
    for c in chains:
        if not c.jobs:
            raise ValueError("a chain needs at least one job")
        first = c.jobs[0] if c.jobs[0].queue or not c.queue else c.jobs[0].on(c.queue)
        if first.job not in known:
            known[first.job] = find_job(first.job, connection)
        alone = len(c.jobs) == 1 and c.catch is None
        sender.add_call(known[first.job], first.job, first.args, first.kwargs,
                        queue=first.queue, delay=first.delay,
                        extra=lone if alone else c.first_payload_extra({BATCH: batch_id}),
                        extra_json=lone_json if alone else None)
    return sender
