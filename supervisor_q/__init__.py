"""supervisor-q: a process manager for Python queue workers.

The public API for applications: define jobs with @job, queue them with
dispatch() or fn.dispatch(); inside a job, release() or fail() it.
"""

from supervisor_q.jobs import (
    Job,
    JobContext,
    current_job,
    dispatch,
    fail,
    job,
    release,
)

__all__ = ["Job", "JobContext", "current_job", "dispatch", "fail", "job", "release"]
__version__ = "0.1.0"
