"""Starting a worker: import the program's job modules, and `supervisor-q work`.

The master's children (master/spawn.py) and `supervisor-q work` both call the setup
hook (run_setup), then import the job modules with import_job_modules. run_standalone
runs the worker under the guard (guard.py), which settles a job it killed through
handback.py as the master does, and after a worker's death by a signal hands back what
else it held, by the holder tag the guard's workers carry (WORK_TAG_PREFIX).
Imports loop, guard, handback, report, restart, fencing and backend.
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets
import sys

from supervisor_q import exitcodes
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.fencing import MASTER_ID_ENV
from supervisor_q.queue.restart import read_generation
from supervisor_q.worker import handback
from supervisor_q.worker.guard import Death, run_guarded
from supervisor_q.worker.joblog import JobLog
from supervisor_q.worker.loop import Worker, WorkerSettings
from supervisor_q.worker.report import Reporter

log = logging.getLogger("supervisor_q.worker")

WORK_TAG_PREFIX = "work:"  # + random hex: a guard's tag (a fleet master id is host:pid:epoch)


class BootError(Exception):
    """The setup hook failed, or a module in the import list could not be imported."""


def run_setup(hook: str | None) -> None:
    """Call the program's setup hook, `module:function` (django:setup, or a function
    that pushes a Flask app context), before its job modules are imported."""
    if not hook:
        return
    module, _, function = hook.partition(":")
    try:
        getattr(importlib.import_module(module), function)()
    except BaseException as exc:  # a hook may even call sys.exit
        raise BootError(f"setup {hook!r} failed: {type(exc).__name__}: {exc}") from exc


def import_job_modules(modules: tuple[str, ...]) -> None:
    """Import the program's modules (they register jobs); the code now on disk."""
    importlib.invalidate_caches()
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # a module may even call sys.exit
            raise BootError(f"cannot import {name!r}: {type(exc).__name__}: {exc}") from exc


def run_standalone(settings: WorkerSettings, queue: RedisQueue) -> int:
    """`supervisor-q work`: the worker runs in a child under a guard process that enforces
    the hard timeout as the master would (guard.py); this process exits as it did.
    Its workers' reservations are named "<tag>|<pid>.<random>" (queue/fencing.py), the
    tag new at each start, so the guard hands back a dead worker's jobs and no other's."""
    tag = f"{WORK_TAG_PREFIX}{secrets.token_hex(12)}"
    return run_guarded(lambda reporter: _work_alone(settings, queue, reporter, tag),
                       lambda death: _settle_dead(settings, queue, tag, death))


def _work_alone(settings: WorkerSettings, queue: RedisQueue, reporter: Reporter,
                tag: str) -> int:
    """Import, then work in the foreground until told to stop."""
    os.environ[MASTER_ID_ENV] = tag  # before its first reserve: it names the holder
    try:
        run_setup(settings.setup)
        import_job_modules(settings.imports)
    except BootError as exc:
        print(f"supervisor-q work: {exc}", file=sys.stderr)
        return exitcodes.BOOT_ERROR
    if settings.log_jobs:  # a line at each job's start and end (joblog.py)
        reporter = JobLog(reporter, settings.label)
    worker = Worker(settings, queue, reporter=reporter, parent_pid=os.getppid())
    worker.install_signals()
    # Waits (with backoff) for a Redis that is down at start instead of crashing.
    worker.started_with = worker.with_redis(lambda: read_generation(queue.client))
    code = worker.run()
    if code != exitcodes.OK and code in exitcodes.EXPECTED:  # a recycle: said, as `work`
        log.warning("%s: exiting with code %d (%s); `work` does not start itself again: "
                    "run it under a process manager that does (supervisor-q run, systemd "
                    "Restart=always)", settings.label, code, exitcodes.DESCRIPTIONS[code])
    return code


def _settle_dead(settings: WorkerSettings, queue: RedisQueue, tag: str, death: Death) -> str:
    """In the guard, once its worker died by a signal or was killed past a job's timeout:
    release or fail the job it ran, as the master does for its children, then hand back
    every other job its reservations held (prefetched, fetched ahead), attempt given back."""
    holder = f"{tag}|{death.pid}."
    how = "timeout" if death.timeout else f"killed by signal {death.signum}"
    if death.job is None:  # idle: nothing it held was started
        back = handback.Handback(handback.LostJob("", ""), 0, "idle", how, holder)
    else:
        job = death.job
        back = handback.Handback(handback.LostJob(job.id, job.queue), job.attempts,
                                 "timeout" if death.timeout else "lost", how, holder,
                                 sweep=True)
    return handback.settle(queue, settings, back)
