"""The job slot: a worker's current job in shared memory, written with plain memory
writes (no syscall per job) and read by whoever watches the worker: the guard of
`supervisor-q work` (guard.py) or the master (master/jobslots.py).

Layout (little-endian): the head, deadline (CLOCK_MONOTONIC, one clock for every process
of the machine; 0.0: idle, inf: a job without a timeout), serial (one per job started),
started_at (monotonic); then attempts and the byte lengths of the queue, the job's name
and its id; then those bytes (surrogate escapes: ids are any bytes). The names are
written while the deadline reads 0.0 and the head last; the reader re-reads the head
after the names and retries on a change (a seqlock without a lock), so it never pairs a
deadline with the names of another job. SLOT_SIZE holds the longest id (payload's
MAX_ID_LENGTH characters, at most 4 bytes each) with a queue and a name; a job whose
names still do not fit runs under UNNAMED (no id, no queue): it is still killed at its
deadline, but not settled by name.

Imports only the standard library.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass

SLOT_SIZE = 4 * mmap.PAGESIZE  # an id of 1024 characters is at most 4096 bytes
_HEAD = struct.Struct("<dQd")  # deadline, serial, started_at
_JOB = struct.Struct("<iIII")  # attempts, bytes of the queue, of the name, of the id
_NAMES = _HEAD.size + _JOB.size
UNNAMED = "(names too long for the job slot)"
MAX_TRIES = 1000  # torn reads in a row before the names are given up (a writer per job)


@dataclass(frozen=True)
class SlotJob:
    """The job the worker runs, as read from the slot."""

    deadline: float  # inf: a job without a timeout
    serial: int
    queue: str
    id: str
    attempts: int
    name: str = ""
    started_at: float = 0.0


class SlotWriter:
    """The worker's side: a few memory writes per job."""

    def __init__(self, slot: mmap.mmap) -> None:
        self.slot = slot
        self.serial = 0
        self.busy = False

    def start(self, job_id: str, name: str, queue: str, timeout: float,
              attempts: int) -> float:
        """Publish a job that starts now; returns its start (monotonic)."""
        slot = self.slot
        if self.busy:  # never a deadline beside the next job's names
            _HEAD.pack_into(slot, 0, 0.0, self.serial, 0.0)
        queue_b = queue.encode(errors="surrogateescape")
        name_b = name.encode(errors="surrogateescape")
        id_b = job_id.encode(errors="surrogateescape")
        if _NAMES + len(queue_b) + len(name_b) + len(id_b) > SLOT_SIZE:
            queue_b, name_b, id_b = b"", UNNAMED.encode(), b""
        names = queue_b + name_b + id_b
        _JOB.pack_into(slot, _HEAD.size, attempts, len(queue_b), len(name_b), len(id_b))
        slot[_NAMES:_NAMES + len(names)] = names
        self.serial += 1
        now = time.monotonic()
        deadline = now + timeout if timeout > 0 else float("inf")
        _HEAD.pack_into(slot, 0, deadline, self.serial, now)  # last: the job is on
        self.busy = True
        return now

    def idle(self) -> None:
        _HEAD.pack_into(self.slot, 0, 0.0, self.serial, 0.0)
        self.busy = False


def read_slot(slot: mmap.mmap) -> SlotJob | None:
    """The running job (deadline inf when it has no timeout), or None; a consistent
    snapshot."""
    return read_state(slot)[1]


def read_state(slot: mmap.mmap) -> tuple[int, SlotJob | None]:
    """(serial, running job or None): the serial of the last job started, and that job
    if it still runs."""
    for _ in range(MAX_TRIES):  # bounded: a slot a job's code scribbled on never hangs us
        head = _HEAD.unpack_from(slot, 0)
        if head[0] == 0.0:
            return head[1], None
        attempts, queue_len, name_len, id_len = _JOB.unpack_from(slot, _HEAD.size)
        if _NAMES + queue_len + name_len + id_len > SLOT_SIZE:  # torn: read again
            continue
        names = bytes(slot[_NAMES:_NAMES + queue_len + name_len + id_len])
        if _HEAD.unpack_from(slot, 0) == head:
            queue = names[:queue_len].decode(errors="surrogateescape")
            name = names[queue_len:queue_len + name_len].decode(errors="surrogateescape")
            job_id = names[queue_len + name_len:].decode(errors="surrogateescape")
            return head[1], SlotJob(head[0], head[1], queue, job_id, attempts, name, head[2])
    return head[1], SlotJob(head[0], head[1], "", "", 0, UNNAMED, head[2])


def clear(slot: mmap.mmap) -> None:
    """Idle, serial 0 (a new worker's slot: a dead one's job is not its job)."""
    _HEAD.pack_into(slot, 0, 0.0, 0, 0.0)


def shared_slot() -> tuple[int, mmap.mmap] | None:
    """A new slot to hand to another process: (memfd, its shared map), or None when
    memfd_create, ftruncate or mmap fail (not Linux, a limit): the caller goes without.
    The fd is close-on-exec; the caller closes it once the other side has it."""
    try:
        fd = os.memfd_create("supervisor-q-job", os.MFD_CLOEXEC)
    except (OSError, AttributeError):
        return None
    try:
        os.ftruncate(fd, SLOT_SIZE)
        return fd, mmap.mmap(fd, SLOT_SIZE, mmap.MAP_SHARED)
    except OSError:
        os.close(fd)
        return None


def keep_from_forks(slot: mmap.mmap) -> None:
    """No process forked from now on inherits this map (MADV_DONTFORK): the master's
    maps of its children's slots stay out of every later child, which could otherwise
    write its siblings' slots, those of another program's user included."""
    try:
        slot.madvise(mmap.MADV_DONTFORK)
    except (AttributeError, OSError, ValueError):  # not Linux: the slots stay inherited
        pass


def map_slot(fd: int) -> mmap.mmap | None:
    """The slot of a memfd received from the master (the fd stays the caller's).

    Python's mmap keeps a dup of the fd for as long as the map lives (3.13 has
    trackfd=False for this): that dup becomes /dev/null, read-only, so a job writing
    to every fd it finds open cannot write its own job out of the slot; the map does
    not need the fd."""
    try:
        spare = os.dup(fd)  # the lowest free fd: the number mmap's own dup will take
        os.close(spare)
        slot = mmap.mmap(fd, SLOT_SIZE, mmap.MAP_SHARED)
    except (OSError, ValueError):
        return None
    try:
        if os.path.samestat(os.fstat(spare), os.fstat(fd)):
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            os.dup2(null, spare, inheritable=False)
            os.close(null)
    except OSError:
        pass
    return slot
