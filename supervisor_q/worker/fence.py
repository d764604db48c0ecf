"""The child-side fence: a worker stops its job once its master's fleet lease ran out.

A fleet master (fleet/member.py) that was only slow -- SIGSTOPped, swapped out, cut off
from Redis while the others still reach it -- is claimed by another master one lease
after its last heartbeat, and its children's jobs run elsewhere. Its children must not
go on running them. So the master keeps, in memory shared with its children (an
anonymous shared mmap made before the first fork; inherited across fork), one number:
"my lease holds until T" (CLOCK_BOOTTIME seconds where there is one: system-wide, and
counting a suspended host's sleep, which CLOCK_MONOTONIC skips), renewed after every
heartbeat that Redis accepted, from the time the heartbeat was *sent* minus a margin.
A claim needs the heartbeat's server time plus the lease, so it comes no earlier than
that send time plus the lease (claims are also only looked for every BEAT); the margin
(fence_margin) covers the watchdog's period and a job that holds the GIL a while.

In the child a daemon thread looks at T every PERIOD seconds (no Redis call); once T
has passed while a job is held, it SIGKILLs the rest of its process group (the job's
own subprocesses) and ends the worker with os._exit(exitcodes.FENCED): nothing of the
job runs past the fence. An idle worker whose lease ran out reserves nothing: it sends
its pending acks, hands back its prefetched jobs and waits (Fenced.fence_closed). The
master replaces a fenced child at once and hands back what the child held, by holder
name, its attempt given back (worker/handback.py): a no-op when a claimer did already.
T == 0 means no lease yet (a master that never beat cannot be claimed): no fence.
A standalone `work` has no master and no fleet lease: its jobs come back only when
their reservation expires, after the job's own timeout, so it needs no fence.
Imports exitcodes and the worker's settings.
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import struct
import threading
import time
from collections.abc import Callable

from supervisor_q import exitcodes
from supervisor_q.worker.settings import WorkerSettings

log = logging.getLogger("supervisor_q.worker")

PERIOD = 0.1  # seconds between the watchdog's looks at the deadline
IDLE_WAIT = 0.5  # an idle fenced worker looks again this often
_FORMAT = struct.Struct("d")
_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def now() -> float:
    """The fence's clock, the same in every process of the host."""
    return time.clock_gettime(_CLOCK)


def fence_margin(lease: float) -> float:
    """How long before the earliest possible claim a child stops: 2 s (a quarter of a
    short lease), far above PERIOD, below the lease less a beat or two."""
    return min(2.0, lease / 4)


class Lease:
    """One 8-byte float in an anonymous shared mapping: the master writes, children read."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, _FORMAT.size)  # MAP_SHARED | MAP_ANONYMOUS on Unix

    def renew(self, until: float) -> None:
        """The lease holds until `until` (now() seconds)."""
        _FORMAT.pack_into(self._map, 0, until)

    def until(self) -> float:
        """The deadline (0.0: none yet); read until two reads agree (no torn value)."""
        while True:
            first = _FORMAT.unpack_from(self._map, 0)[0]
            if _FORMAT.unpack_from(self._map, 0)[0] == first:
                return first

    def expired(self) -> bool:
        until = self.until()
        return until > 0 and now() >= until


_shared: Lease | None = None


def shared() -> Lease:
    """The master's lease (made once; call before forking children)."""
    global _shared
    if _shared is None:
        _shared = Lease()
    return _shared


def inherited() -> Lease | None:
    """In a forked child: the master's lease, or None when it never made one."""
    return _shared


def stop_group() -> None:
    """SIGKILL every other process of our group (the job's subprocesses), then end this
    worker at once with FENCED. Called from the watchdog thread: no logging (a lock the
    job's thread holds would hang it), one write to stderr."""
    os.write(2, b"supervisor-q: the master's fleet lease ran out mid-job: stopping the "
                b"job (fenced); it runs elsewhere\n")
    me, group = os.getpid(), os.getpgrp()
    for pid in _group_members(group):
        if pid != me:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    os._exit(exitcodes.FENCED)


def _group_members(group: int) -> list[int]:
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == group:  # state, ppid, pgrp
            found.append(int(name))
    return found


def watch(lease: Lease, holding: Callable[[], bool]) -> threading.Thread:
    """Start the watchdog: stop_group() once the lease ran out while holding() is true."""
    def loop() -> None:
        while True:
            time.sleep(PERIOD)
            if holding() and lease.expired():
                stop_group()

    thread = threading.Thread(target=loop, name="supervisor-q-fence", daemon=True)
    thread.start()
    return thread


class Fenced:
    """The Worker's part (mixed in): `fence` is the inherited lease or None."""

    fence: Lease | None
    settings: WorkerSettings
    holding = False  # a reserved job is being run or settled: the watchdog may stop it
    _fence_logged = False

    def start_fence(self) -> None:
        if self.fence is not None:
            watch(self.fence, lambda: self.holding)

    def hold(self, held: bool) -> None:
        """Mark a job held (True) or settled (False); a held job past the fence stops."""
        self.holding = held
        if held and self.fence is not None and self.fence.expired():
            stop_group()

    def fence_closed(self) -> bool:
        """True (after a short wait) while the master's lease has run out: reserve
        nothing; acks are sent and prefetched jobs handed back (both by token: a no-op
        for a job another master holds now)."""
        if self.fence is None or not self.fence.expired():
            if self._fence_logged:
                log.info("%s: the master's fleet lease holds again", self.settings.label)
            self._fence_logged = False
            return False
        if not self._fence_logged:
            log.warning("%s: the master's fleet lease ran out: taking no job until it beats "
                        "again", self.settings.label)
            self._fence_logged = True
        self.hand_back_prefetched()
        self.flush_pending()
        self.title("fenced")
        self.sleep_interruptibly(IDLE_WAIT)
        return True

    # the Worker's own (Fenced comes last in its bases)
    def hand_back_prefetched(self) -> None:
        raise NotImplementedError

    def flush_pending(self) -> None:
        raise NotImplementedError

    def title(self, state: str) -> None:
        raise NotImplementedError

    def sleep_interruptibly(self, seconds: float) -> None:
        raise NotImplementedError
