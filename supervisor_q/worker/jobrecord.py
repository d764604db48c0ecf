"""What the worker records for job lookup (queue/jobinfo.py), without a round trip of
its own: who it is (written by the RESERVE script at each reserve) and each done job's
record (written by the ack that rides with the next reserve); a failed job's record
gets where and when it ran the same way (in the failed store, written by the fail).
Imports jobinfo, backend (the Reserved type), payload and outcome.
"""

from __future__ import annotations

import json
import os
import socket
import time
from json.encoder import encode_basestring_ascii as _quote  # json.dumps's own
from typing import Any

from supervisor_q import procid
from supervisor_q.queue.backend import RedisQueue, Reserved
from supervisor_q.queue.jobinfo import Done, result_fields, who
from supervisor_q.queue.payload import Payload
from supervisor_q.worker.outcome import failed_record

_host = socket.gethostname()  # asked again in identify(), not once per job
_running: tuple[Reserved, float] | None = None  # the job this process started last, when


def started(job: Reserved) -> float:
    """Note that job starts now (epoch seconds, returned) for its failed record."""
    global _running
    _running = (job, time.time())
    return _running[1]


def failed_entry(job: Reserved, reason: str, trace: str | None) -> dict:
    """The failed-store record of job (outcome.failed_record) with, when it ran here,
    its start, host, pid and runtime; exceptions counts this one when trace is given."""
    record = failed_record(job, reason, trace)
    record["exceptions"] = job.exceptions + (1 if trace is not None else 0)
    if _running is not None and _running[0] is job:
        record.update(started_at=_running[1], host=_host, pid=procid.pid(),
                      runtime=max(0.0, record["failed_at"] - _running[1]))
    return record


def identify(queue: RedisQueue, keep_jobs_max: int) -> None:
    """Make queue record this process (host, pid) in every job it reserves."""
    global _host
    _host = socket.gethostname()
    queue.who = who(_host, os.getpid())
    queue.done_cap = keep_jobs_max


# The last dispatch time and its repr: jobs dispatched in the same millisecond (a
# burst, a dispatch_many) share it, and a float's repr is a done record's dearest part.
# 0.0 is never kept (-0.0 == 0.0, and their reprs differ).
_last_dispatched: tuple[float, str] = (0.0, "")
_new_done = tuple.__new__  # Done(...) without its Python-level __new__


def _dispatched(at: float) -> str:
    """repr(at), kept for the next job's same time."""
    global _last_dispatched
    if at == _last_dispatched[0] and at:
        return _last_dispatched[1]
    _last_dispatched = (at, repr(at))
    return _last_dispatched[1]


def done_entry(job: Reserved, decoded: Payload, started: float, value: Any, keep: float,
               keep_result: float | None) -> Done | str:
    """The ack of a job that returned value: its id with its done record (kept keep
    seconds, or keep_result if longer), or the bare id when nothing is kept."""
    if not keep_result and not decoded.extra:  # the common record, as json.dumps writes it
        if keep <= 0:
            return job.id
        return _new_done(Done, (job.id, int(keep * 1000), (
            f'{{"job":{_quote(decoded.job)},"attempts":{job.attempts},"dispatched_at":'
            f'{_dispatched(decoded.dispatched_at)},"started_at":{started!r},"ended_at":'
            f'{time.time()!r},"host":{_quote(_host)},"pid":{procid.pid()}}}')))
    if keep <= 0 and not keep_result:
        return job.id
    now = time.time()
    kept = max(keep, keep_result or 0.0)
    record: dict[str, Any] = {
        "job": decoded.job, "attempts": job.attempts, "dispatched_at": decoded.dispatched_at,
        "started_at": started, "ended_at": now, "host": _host,
        "pid": procid.pid()}
    chain = decoded.extra.get("chain")
    if isinstance(chain, list):
        record["chain"] = [s.get("job") or next(iter(s), None) for s in chain
                           if isinstance(s, dict)]  # a batch step: "batch"
    if isinstance(decoded.extra.get("batch"), str):
        record["batch"] = decoded.extra["batch"]
    if keep_result:
        record.update(result_fields(value, keep_result, now))
    return Done(job.id, int(kept * 1000), json.dumps(record, separators=(",", ":")))
