"""Sync mode: run dispatched jobs inline in the dispatching process, like Laravel's
`sync` driver, for local development and the application's own tests.

Turn it on with SUPERVISOR_Q_SYNC=1 or dispatching.set_sync(True). A job runs through
the same lifecycle as in a worker (middleware, events, chains, batches), once: a
release is ignored, a fail() records the failure, an exception is raised to the
caller after the failing callbacks ran. The job API does not import this module: it
plugs itself in as dispatching's inline dispatcher when imported, which
supervisor_q/__init__.py does for every process. Imports registry, context, dispatching
and lifecycle.
"""

from __future__ import annotations

import logging

from supervisor_q.jobs import dispatching
from supervisor_q.jobs.context import (
    FailJob,
    JobContext,
    ReleaseJob,
    reset_current_job,
    set_current_job,
)
from supervisor_q.jobs.registry import REGISTRY
from supervisor_q.queue.payload import Payload, loggable
from supervisor_q.worker import lifecycle

log = logging.getLogger("supervisor_q.sync")


def run_inline(built: Payload) -> None:
    """Run one dispatched payload now; only registered jobs run."""
    target = REGISTRY.get(built.job)
    token = set_current_job(JobContext(built.id, built.job, built.queue, 1, built))
    try:
        lifecycle.invoke(target, built)
    except ReleaseJob as exc:
        log.info("sync mode: %s asked to be released (%.1fs); not run again", loggable(built.job),
                 exc.delay)
    except FailJob as exc:
        lifecycle.failed(built, exc.reason)
    except Exception as exc:
        lifecycle.failed(built, f"{type(exc).__name__}: {exc}")
        raise
    else:
        lifecycle.succeeded(built)
    finally:
        reset_current_job(token)


dispatching.use_inline(run_inline)
