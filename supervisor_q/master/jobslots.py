"""The master's side of its worker children's job slots (worker/jobslot.py).

Each worker child gets a memfd the master maps (MAP_SHARED) and keeps in the child's
RunRecord: a plain fork inherits the map, a preloaded child gets the memfd over
SCM_RIGHTS (zygote.py) and maps it. The child writes its current job there and sends
its finished jobs as summaries (worker/slotreport.py: M lines), so the master parses no
line per job. sync() brings child.job up to date from the slot: the arbiter calls it for
every slot child on each turn before deadlines are enforced (and waits at most
SLOT_POLL while one lives, so a job's deadline is known within SLOT_POLL of its start),
before a reaped child's job is handed back, and before status or the fleet list running
jobs. apply_summary() counts a summary as the S and E lines were counted.
Without a slot (memfd or mmap failed) a child reports S and E lines as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from supervisor_q.master.pool import Pool
from supervisor_q.master.process import ChildProcess, CurrentJob
from supervisor_q.observe.counters import Counters
from supervisor_q.worker.jobslot import read_state
from supervisor_q.worker.report import Summary

SLOT_POLL = 0.25  # longest wait of the arbiter while a worker child with a slot lives


def sync(pool: Pool, child: ChildProcess) -> None:
    """child.job from the slot: a new job (a serial not seen yet) replaces it, an idle
    slot clears the job it gave (not counted: the summaries count); a job the master
    cleared itself (fleet: settled by a claimer) stays cleared while its serial runs,
    and one an S line or an unreadable report gave (reports.py: written by a job's code)
    is not ended by the slot."""
    run = pool.run_of(child)
    if run.slot is None:
        return
    serial, job = read_state(run.slot)
    if job is None:
        if child.job is not None and child.job is run.slot_job:
            child.job = None
            run.term_sent_at = None
        run.slot_job = None
    elif serial != run.slot_serial:
        deadline = None if math.isinf(job.deadline) else job.deadline
        child.job = run.slot_job = CurrentJob(job.id, job.name, job.queue, job.started_at,
                                              deadline)
        run.attempts = job.attempts
        run.term_sent_at = None
    run.slot_serial = serial


def sync_all(pools: Iterable[Pool]) -> None:
    """sync() every live child with a slot."""
    for pool in pools:
        for child in pool.children:
            if pool.run_of(child).slot is not None and not child.reaped:
                sync(pool, child)


def drop(pool: Pool, child: ChildProcess) -> None:
    """Forget child's job (settled elsewhere): the slot's current serial stays seen."""
    sync(pool, child)
    child.job = None


def close(pool: Pool, child: ChildProcess) -> None:
    """The run is over (reaped, last reports read): unmap its slot."""
    run = pool.run_of(child)
    if run.slot is not None:
        slot, run.slot = run.slot, None
        try:
            slot.close()
        except (BufferError, OSError):  # a view still held: the map goes with its object
            pass


def apply_summary(pool: Pool, child: ChildProcess, summary: Summary,
                  counters: Counters | None, minute: int) -> None:
    """Count a child's summary: starts per wait, finishes per runtime."""
    waits, runtimes = summary
    record = pool.scaling.record_runtime
    for _queue, _name, _outcome, values in runtimes:
        child.jobs_done += len(values)
        for runtime in values:
            record(runtime)
    if counters is None:
        return
    for queue, name, values in waits:
        counters.started_many(queue, name, values, minute)
    for queue, name, outcome, values in runtimes:
        counters.finished_many(queue, name, outcome, values, minute)
