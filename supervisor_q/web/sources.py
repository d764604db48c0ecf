"""What the dashboard shows, read from Redis only: the fleet, queues, failed jobs,
batches, the metrics' per-minute buckets (observe/buckets.py) and job lookup
(queue/jobinfo.py). Every page handler calls one function here, so the data a page
needs sits in one small module.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from supervisor_q.fleet import inbox, registry
from supervisor_q.fleet.registry import members
from supervisor_q.observe.buckets import read_series
from supervisor_q.queue import ids, jobinfo
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.failed import with_arguments
from supervisor_q.queue.keys import check_queue_name
from supervisor_q.queue.pauses import paused_queues
from supervisor_q.workflows.batches import list_batches


@dataclass(frozen=True)
class QueueRow:
    name: str
    ready: int
    delayed: int
    reserved: int
    failed: int
    oldest_wait: float
    paused: bool


def fleet(queue: RedisQueue) -> list[dict[str, Any]]:
    """Every live master (then those gone lately) with its programs and processes."""
    return [m.as_json() for m in members(queue.client)]


def queue_rows(queue: RedisQueue, names: list[str] | None = None) -> list[QueueRow]:
    """Depths and oldest wait of every known queue (or of names), pipelined."""
    names = queue.known_queues() if names is None else names
    paused = paused_queues(queue.client)
    pipe = queue.client.pipeline(transaction=False)
    for name in names:
        k = queue.keys(name)
        pipe.llen(k.ready)
        pipe.zcard(k.delayed)
        pipe.zcard(k.reserved)
        pipe.zcard(k.failed)
        pipe.lindex(k.ready, 0)  # the oldest ready id
    replies = pipe.execute()
    oldest = _oldest_waits(queue, names, replies[4::5])
    rows = []
    for i, name in enumerate(names):
        ready, delayed, reserved, failed = replies[5 * i:5 * i + 4]
        rows.append(QueueRow(name, ready, delayed, reserved, failed, oldest[i],
                             name in paused))
    return rows


def _oldest_waits(queue: RedisQueue, names: list[str], ids: list[Any]) -> list[float]:
    pipe = queue.client.pipeline(transaction=False)
    for name, job_id in zip(names, ids, strict=True):
        pipe.hget(queue.keys(name).enqueued, job_id if job_id is not None else b"")
    seconds, micros = queue.client.time()  # the server's clock, like the LOAD script
    now_ms = int(seconds) * 1000 + int(micros) / 1000
    waits = []
    for stamp in pipe.execute():
        try:
            waits.append(max(0.0, (now_ms - float(stamp)) / 1000) if stamp else 0.0)
        except ValueError:
            waits.append(0.0)
    return waits


FAILED_PAGE = 100  # failed jobs per page of the dashboard


def failed_jobs(queue: RedisQueue, name: str | None = None,
                page: int = 1) -> tuple[list[dict[str, Any]], int]:
    """One page of failed records, newest first (of one queue, or of all), and how many
    there are: a page costs the same at 100,000 failed jobs as at 10 (failedpage.py)."""
    return queue.failed_page(None if name is None else [name], (page - 1) * FAILED_PAGE,
                             FAILED_PAGE)


def failed_job(queue: RedisQueue, queue_name: str, job_id: str) -> dict[str, Any] | None:
    """One failed record, or None; job_id as stored or as shown (queue/ids.py)."""
    try:
        key = queue.keys(check_queue_name(queue_name)).failed_records
    except ValueError:
        return None
    for each in ids.candidates(job_id):
        try:
            raw = queue.client.hget(key, ids.raw(each))
            record = json.loads(raw) if raw is not None else None
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            return with_arguments(record)
    return None


def batches(queue: RedisQueue, limit: int = 50) -> list[dict[str, Any]]:
    return [p.to_json() for p in list_batches(queue, limit)]


def scale_refusal(queue: RedisQueue, master_id: str, program: str) -> str | None:
    """Why a scale of program on master_id cannot be sent (the master is not live, or
    runs no such program), or None. One GET of its heartbeat."""
    beat = queue.client.get(registry.heartbeat_key(master_id))
    try:
        status = json.loads(beat) if beat is not None else None
    except ValueError:
        status = None
    shown = ids.shown(master_id)[:100]
    if not isinstance(status, dict):
        return f"master {shown} is not live: nothing sent"
    names = [p.get("name") for p in status.get("programs") or [] if isinstance(p, dict)]
    if program not in names:
        return f"master {shown} runs no program {ids.shown(program)[:100]}: nothing sent"
    return None


def send_scale(queue: RedisQueue, master_id: str, program: str, numprocs: int) -> None:
    inbox.send(queue.client, master_id, "scale", program=program, numprocs=numprocs)


# -- metrics (observe/buckets.py) and job lookup (queue/jobinfo.py) --------------------

def series(queue: RedisQueue, name: str | None, minutes: int) -> dict[str, Any]:
    """Per minute, oldest first, of one queue or of all summed: epoch seconds `t`, jobs
    finished `throughput`, of them `failed`, and mean `runtime` in seconds (None for a
    minute without finished jobs), from the fleet-wide metric buckets."""
    names = [name] if name is not None else queue.known_queues()
    finished: dict[int, int] = {}
    failed: dict[int, int] = {}
    runtime_ms: dict[int, int] = {}
    for each in names:
        for minute in read_series(queue.client, each, minutes):
            jobs = minute.jobs.values()
            finished[minute.at] = finished.get(minute.at, 0) + sum(j.finished for j in jobs)
            failed[minute.at] = failed.get(minute.at, 0) + minute.outcome("failed")
            runtime_ms[minute.at] = runtime_ms.get(minute.at, 0) + sum(
                j.runtime_ms for j in jobs)
    ats = sorted(finished)
    return {"t": [at * 60 for at in ats], "throughput": [finished[at] for at in ats],
            "failed": [failed[at] for at in ats],
            "runtime": [round(runtime_ms[at] / finished[at] / 1000, 4) if finished[at]
                        else None for at in ats]}


SERIES_TTL = {60: 5.0, 1440: 60.0}  # seconds a chart's data is reused, by minutes shown
SeriesCache = dict[tuple[str | None, int], tuple[float, dict[str, Any]]]


def cached_series(cache: SeriesCache, queue: RedisQueue, name: str | None,
                  minutes: int) -> dict[str, Any]:
    """series(), reused for SERIES_TTL (cache: the app's own): a day over many queues
    is a heavy read, and every page that shows charts asks for it."""
    key = (name, minutes)
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and now - hit[0] < SERIES_TTL.get(minutes, 5.0):
        return hit[1]
    data = series(queue, name, minutes)
    if len(cache) > 1000:  # one entry per queue and range: bounded anyway
        cache.clear()
    cache[key] = (now, data)
    return data


def recent_jobs(queue: RedisQueue, name: str | None = None,
                limit: int = 50) -> list[dict[str, Any]]:
    """Running, recently finished and failed jobs, newest first."""
    return [s.to_json() for s in jobinfo.recent_jobs(queue.client, name, limit)]


def job_detail(queue: RedisQueue, job_id: str) -> dict[str, Any] | None:
    """A job's state, times, worker, exception and chain/batch membership, or None."""
    found = jobinfo.job_status(queue.client, job_id)
    return None if found is None else found.to_json()
