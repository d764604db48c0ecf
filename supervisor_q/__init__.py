"""supervisor-q: a process manager for Python queue workers.

The public API for applications: define jobs with @job, queue them with
dispatch() or fn.dispatch() (many at once: dispatch_many), or as chain([...]) /
batch([...]); inside a job, release() or fail() it; job_status(id) says where a job is.

The names load on first use (PEP 562 `__getattr__`), so importing one part of the
package (the master, the CLI, the queue layer) never drags in the job API, and the
job API never drags in the master. Using any of them also installs sync mode
(`worker/sync.py` plugs itself into `jobs/dispatching.py`).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one version: pyproject.toml reads it (setuptools dynamic)

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Job": "supervisor_q.jobs.registry",
    "JobContext": "supervisor_q.jobs.registry",
    "current_job": "supervisor_q.jobs.registry",
    "dispatch": "supervisor_q.jobs.registry",
    "dispatch_if": "supervisor_q.jobs.registry",
    "dispatch_unless": "supervisor_q.jobs.registry",
    "dispatch_many": "supervisor_q.jobs.registry",
    "BulkDispatchError": "supervisor_q.jobs.bulk",
    "fail": "supervisor_q.jobs.registry",
    "job": "supervisor_q.jobs.registry",
    "release": "supervisor_q.jobs.registry",
    "set_sync": "supervisor_q.jobs.dispatching",
    "generate_key": "supervisor_q.jobs.encryption",
    "WithoutOverlapping": "supervisor_q.jobs.controls",
    "Throttle": "supervisor_q.jobs.controls",
    "Funnel": "supervisor_q.jobs.controls",
    "ThrottlesExceptions": "supervisor_q.jobs.controls",
    "Skip": "supervisor_q.jobs.middleware",
    "chain": "supervisor_q.workflows.chains",
    "append_to_chain": "supervisor_q.workflows.chains",
    "prepend_to_chain": "supervisor_q.workflows.chains",
    "batch": "supervisor_q.workflows.batches",
    "current_batch": "supervisor_q.workflows.batches",
    "job_status": "supervisor_q.jobs.lookup",
    "JobStatus": "supervisor_q.jobs.lookup",
}
_MODULES: dict[str, str] = {"events": "supervisor_q.jobs.events"}

__all__ = [  # the same names as _EXPORTS and _MODULES (tests/test_testing_fake.py checks it)
    "BulkDispatchError", "Funnel", "Job", "JobContext", "JobStatus", "Skip", "Throttle",
    "ThrottlesExceptions", "WithoutOverlapping", "append_to_chain", "batch", "chain",
    "current_batch", "current_job", "dispatch", "dispatch_if", "dispatch_many",
    "dispatch_unless", "events", "fail", "generate_key", "job", "job_status",
    "prepend_to_chain", "release", "set_sync",
]


def __getattr__(name: str) -> Any:
    """Load a public name the first time it is asked for, then keep it."""
    if name in _MODULES:
        value: Any = import_module(_MODULES[name])
    elif name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'supervisor_q' has no attribute {name!r}")
    import_module("supervisor_q.worker.sync")  # sync mode is there whenever the API is
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # what type checkers and IDEs see
    from supervisor_q.jobs import events
    from supervisor_q.jobs.bulk import BulkDispatchError
    from supervisor_q.jobs.controls import (
        Funnel,
        Throttle,
        ThrottlesExceptions,
        WithoutOverlapping,
    )
    from supervisor_q.jobs.dispatching import set_sync
    from supervisor_q.jobs.encryption import generate_key
    from supervisor_q.jobs.lookup import JobStatus, job_status
    from supervisor_q.jobs.middleware import Skip
    from supervisor_q.jobs.registry import (
        Job,
        JobContext,
        current_job,
        dispatch,
        dispatch_if,
        dispatch_many,
        dispatch_unless,
        fail,
        job,
        release,
    )
    from supervisor_q.workflows.batches import batch, current_batch
    from supervisor_q.workflows.chains import append_to_chain, chain, prepend_to_chain
