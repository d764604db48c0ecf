"""Settle a job whose child died under it: release it for another attempt or fail it.

The master calls this right after reaping, so a killed job does not wait for its
reservation to expire. Every call names the attempt the child reported, so a job
that another worker has reserved since is never touched.
"""

from __future__ import annotations

import logging
import time

import redis

from supervisor_q.config.loading import WorkerProgram
from supervisor_q.jobs.registry import declared_job
from supervisor_q.master.pool import Handback
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, Reserved
from supervisor_q.worker import lifecycle, outcome
from supervisor_q.worker.loop import WorkerSettings, failed_record

log = logging.getLogger("supervisor_q.handback")


def settle(queue: RedisQueue, program: WorkerProgram | WorkerSettings, back: Handback) -> str:
    """Release or fail the job of back; returns what was done, for the log."""
    job = back.job
    if not job.id:  # its start report was unreadable: the reservation brings it back
        return "left to reservation expiry (unreadable start report)"
    try:
        found = queue.reserved_job(job.queue, job.id)
        if found is None:
            return "already settled"
        raw, attempts, exceptions = found
        if attempts != back.attempts:
            return "a later attempt holds it"
        try:
            decoded: payloads.Payload | None = payloads.decode(raw)
        except payloads.MalformedPayload:
            decoded = None
        declared = declared_job(decoded.job, queue) if decoded is not None else None
        limits = outcome.resolve_limits(decoded, tries=program.tries, backoff=program.backoff,
                                        timeout=program.timeout,
                                        declared=declared.options if declared else None)
        now = time.time()
        if back.why == "stopped":
            queue.release(job.queue, job.id, 0, expected_attempts=attempts, undo_attempt=True)
            return "handed back (shutdown)"
        if back.why == "timeout":
            decision = outcome.after_timeout(limits, attempts, now)
        elif back.why == "memory":
            decision = outcome.after_lost_worker(
                limits, attempts, now, f"memory: worker passed memory_hard "
                f"({getattr(program, 'memory_hard', 0)} MB) and was killed")
        else:
            decision = outcome.after_lost_worker(limits, attempts, now, f"worker {back.how}")
        if decision.release:
            queue.release(job.queue, job.id, decision.delay, expected_attempts=attempts)
            return f"released for attempt {attempts + 1} in {decision.delay:g}s"
        reason = decision.reason
        reserved = Reserved(job.queue, job.id, raw, attempts, exceptions, 0.0)
        if queue.fail(job.queue, job.id, failed_record(reserved, reason, None),
                      expected_attempts=attempts):
            # What the dead child could not do (failing events, chain catch, batch
            # failure, unique unlock) is left to a worker of the job's queue.
            if decoded is not None:
                lifecycle.failed_elsewhere(queue, job.queue, raw, reason, attempts)
        return f"failed: {reason}"
    except redis.RedisError as exc:
        log.warning("job %s: cannot settle now (%s); its reservation expires instead", job.id,
                    exc)
        return "left to reservation expiry"
