"""supervisor-q: a process manager for Python queue workers.

The public API for applications: define jobs with @job, queue them with
dispatch() or fn.dispatch(), or as chain([...]) / batch([...]); inside a job,
release() or fail() it.
"""

from supervisor_q.jobs import events
from supervisor_q.jobs.registry import (
    Job,
    JobContext,
    current_job,
    dispatch,
    fail,
    job,
    release,
)
from supervisor_q.worker import sync as _sync  # noqa: F401  installs sync mode (use_inline)
from supervisor_q.workflows.batches import batch, current_batch
from supervisor_q.workflows.chains import chain

__all__ = ["Job", "JobContext", "batch", "chain", "current_batch", "current_job", "dispatch",
           "events", "fail", "job", "release"]
__version__ = "0.1.0"
