"""What the worker records for job lookup (queue/jobinfo.py), without a round trip of
its own: who it is (written by the RESERVE script at each reserve) and each done job's
record (written by the ack that rides with the next reserve). Imports jobinfo, backend
(the Reserved type) and payload.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from supervisor_q.queue.backend import RedisQueue, Reserved
from supervisor_q.queue.jobinfo import Done, result_fields, who
from supervisor_q.queue.payload import Payload


def identify(queue: RedisQueue, keep_jobs_max: int) -> None:
    """Make queue record this process (host, pid) in every job it reserves."""
    queue.who = who(socket.gethostname(), os.getpid())
    queue.done_cap = keep_jobs_max


def done_entry(job: Reserved, decoded: Payload, started: float, value: Any, keep: float,
               keep_result: float | None) -> Done | str:
    """The ack of a job that returned value: its id with its done record (kept keep
    seconds, or keep_result if longer), or the bare id when nothing is kept."""
    if keep <= 0 and not keep_result:
        return job.id
    now = time.time()
    record: dict[str, Any] = {
        "job": decoded.job, "attempts": job.attempts, "dispatched_at": decoded.dispatched_at,
        "started_at": started, "ended_at": now, "host": socket.gethostname(),
        "pid": os.getpid()}
    chain = decoded.extra.get("chain")
    if isinstance(chain, list):
        record["chain"] = [s.get("job") for s in chain if isinstance(s, dict)]
    if isinstance(decoded.extra.get("batch"), str):
        record["batch"] = decoded.extra["batch"]
    if keep_result:
        record.update(result_fields(value, keep_result, now))
    kept = max(keep, keep_result or 0.0)
    return Done(job.id, int(kept * 1000), json.dumps(record, separators=(",", ":")))
