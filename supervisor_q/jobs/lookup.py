"""job_status(id): where a job is and what became of it (the public API; the Redis side
is queue/jobinfo.py). Imports dispatching (the connection) and jobinfo.
"""

from __future__ import annotations

from supervisor_q.jobs import dispatching
from supervisor_q.queue.jobinfo import JobStatus
from supervisor_q.queue.jobinfo import job_status as _job_status


def job_status(job_id: bytes | str, *, queue: str | None = None,
               connection: str | None = None) -> JobStatus | None:
    """The status of job_id (as dispatch returned it, or as `failed list` and `job`
    print it, with \\xNN for bytes that are not UTF-8 and \\n for a newline; see
    queue/ids.py), or None if no queue knows it.
    queue skips the search of every known queue; connection is a Redis URL (default:
    the worker's, else SUPERVISOR_Q_REDIS_URL, else the embedded server)."""
    client = dispatching.queue(connection).client
    return _job_status(client, job_id, queue)
