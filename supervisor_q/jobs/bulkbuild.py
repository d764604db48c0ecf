"""The fast road for bulk dispatch: a job's payload JSON from a template, not per job.

Everything a dispatch_many or batch call shares between its jobs is worked out once per
(job, queue): the queue name check, the options (timeout, tries, backoff, retry_until,
max_exceptions, fail_on_timeout) already serialised in payload.encode()'s order. Per
job only the id, the arguments, the extras, dispatched_at (and a retry_until computed
from it, when the job has retry_for or a callable) are serialised, with one reused JSON
encoder. The bytes are exactly payload.encode(Job.payload(...))'s for the same job
(tests/jobs/test_bulkbuild.py compares them). Ids come from one os.urandom read per
CHUNK, in the UUID4 text form new_job_id() gives.

Sealed jobs cannot take this road: an encrypted job, or any job while a signing key is
set, and unique jobs (their lock is per job) go through Job.payload and seal as before;
Sender.plain() says which. Imports options and payload.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from supervisor_q.queue import payload as payloads
from supervisor_q.queue.keys import check_queue_name
from supervisor_q.queue.payload import DEFAULT_QUEUE, PAYLOAD_VERSION, UUID_VARIANT

if TYPE_CHECKING:
    from supervisor_q.jobs.options import JobOptions

def job_ids(per_read: int = 1000) -> Iterator[str]:
    """Endless UUID4 ids (the version and variant bits set as uuid.uuid4() sets them),
    per_read of them from each os.urandom call."""
    while True:
        h = os.urandom(16 * per_read).hex()
        for i in range(0, 32 * per_read, 32):
            yield (f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-"
                   f"{UUID_VARIANT[h[i + 16]]}{h[i + 17:i + 20]}-{h[i + 20:i + 32]}")


def _field(name: str, value: Any, job: str) -> str:
    ""","name":value as payload.encode() writes it; "" for a value it leaves out."""
    if value is None or value is False:
        return ""
    return f',"{name}":{payloads.to_json(value, job)}'


class Template:
    """The payload JSON of one job on one queue, with holes for what differs per job."""

    def __init__(self, name: str, queue: str, options: JobOptions | None) -> None:
        self.name = name
        self.queue = check_queue_name(queue)
        timeout = options.timeout if options is not None else None
        self.head = ("{" if timeout is None else
                     f'{{"v":{PAYLOAD_VERSION},"timeout":{payloads.to_json(timeout, name)},')
        self.names = (f'","job":{payloads.to_json(name, name)},'
                      f'"queue":{payloads.to_json(self.queue, name)}')
        self.options = options
        self.retry_each = options is not None and (
            options.retry_for is not None or callable(options.retry_until))
        self.before_retry = self.after_retry = ""
        self.retry = ""
        if options is not None:
            self.before_retry = (_field("tries", options.tries, name) + _field(
                "backoff", list(options.backoff) if options.backoff is not None else None,
                name))
            if not self.retry_each:
                self.retry = _field("retry_until", options.retry_until, name)
            self.after_retry = (_field("max_exceptions", options.max_exceptions, name)
                                + _field("fail_on_timeout", options.fail_on_timeout, name))

    def render(self, job_id: str, args: list | tuple, kwargs: dict,
               extra: dict | str | None = None) -> str:
        """The payload of one job: payload.encode() of the Payload Job.payload() builds.
        extra may come serialised already (a str: to_json of a non-empty dict)."""
        to_json = payloads.to_json
        parts = [self.head, '"id":"', job_id, self.names]
        if args:
            parts += [',"args":', to_json(args, self.name)]
        if kwargs:
            parts += [',"kwargs":', to_json(kwargs, self.name)]
        parts.append(self.before_retry)
        if self.retry_each:
            parts.append(_field("retry_until", self.options.retry_deadline(  # type: ignore[union-attr]
                time.time()), self.name))
        else:
            parts.append(self.retry)
        parts += [self.after_retry, ',"dispatched_at":', repr(round(time.time(), 3))]
        if extra:
            parts += [',"extra":', extra if isinstance(extra, str) else to_json(extra, self.name)]
        parts.append("}")
        return "".join(parts)


def template(name: str, queue: str | None, options: JobOptions | None) -> Template:
    """The Template of a job (options None: a job known by name only, all defaults)."""
    default = options.queue if options is not None else DEFAULT_QUEUE
    return Template(name, queue or default, options)
