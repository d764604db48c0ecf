"""The hard timeout of `supervisor-q work`, which has no master to enforce it.

The process the user started stays a small guard: it forks the worker into a child
of its own process group (the job's subprocesses included) and waits. The worker
writes its current job (deadline, queue, id, attempt) into a shared memory slot with
plain memory writes, so a job costs no extra syscall. The guard looks at the slot a
few times a second; when a job is still running half a second after its deadline (C
code, SIGALRM blocked) it SIGTERMs the child's group, SIGKILLs it half a second
later, settles the job like the master does (reason "timeout") and exits 14.
A worker that dies by a signal the guard did not send (SIGKILL, a segfault, the OOM
killer) has its running job settled and every other job its reservations held handed
back (Death, boot.py), then a new worker takes its place, unless a stop was forwarded or
it is the MAX_QUICK-th in a row to die within MIN_LIFE of its start: then the guard dies
of the same signal. Otherwise it forwards TERM, INT, USR1 and USR2 to the worker and
exits as the worker did. The worker dies with the guard (parent-death signal plus a
parent check).

Imports only the standard library, the exit codes and the job slot (jobslot.py) at module
level.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from supervisor_q import exitcodes
from supervisor_q.forked import exit_with
from supervisor_q.worker.jobslot import SLOT_SIZE, SlotJob, SlotWriter, clear, read_slot

log = logging.getLogger("supervisor_q.guard")

TERM_GRACE = 0.5  # after a job's deadline: SIGTERM to the worker's group (as pool.py)
KILL_GRACE = 0.5  # ... and SIGKILL this much later if it is still there
POLL = 0.25  # longest time between two looks at the slot (a new job may have started)
PR_SET_PDEATHSIG = 1
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
STOPS = (signal.SIGTERM, signal.SIGINT)  # forwarded, they end the worker: no replacement
MIN_LIFE = 5.0  # a worker killed sooner after its start counts as a quick death ...
MAX_QUICK = 3  # ... and this many in a row end the guard (a crash loop, not a one-off)


def _loggable(value: object, limit: int = 200) -> str:
    """An id or outcome for a log line, on one line (imported when a job is killed)."""
    from supervisor_q.queue.payload import loggable

    return loggable(value, limit)

class SlotReporter:
    """The worker's side of the slot (a childpipe.Reporter): a few memory writes per job
    (jobslot.py: the layout, and why the guard never pairs a deadline with the names of
    another job)."""

    def __init__(self, slot: mmap.mmap) -> None:
        self.writer = SlotWriter(slot)

    def ready(self, generation: float | None) -> None:
        pass

    def job_started(self, job_id: str, name: str, queue: str, timeout: float,
                    attempts: int, wait: float = 0.0) -> None:
        self.writer.start(job_id, name, queue, timeout, attempts)

    def job_finished(self, job_id: str, outcome: str = "done") -> None:
        self.writer.idle()

    def job_refused(self, job_id: str, name: str, queue: str, attempts: int,
                    wait: float = 0.0) -> None:
        pass  # nothing ran: no deadline to watch

    def hold_finishes(self, margin: float | None) -> None:
        pass  # memory writes, no system call: nothing to gain

    def flush(self) -> None:
        pass


@dataclass(frozen=True)
class Death:
    """A worker that died by a signal: what the guard's settle callback is given."""

    pid: int  # with the guard's holder tag, the prefix of its reservations' tokens
    job: SlotJob | None  # the job it was running; None: idle
    signum: int
    timeout: bool  # the guard killed it: the job passed its deadline


def run_guarded(work: Callable[[SlotReporter], int],
                settle: Callable[[Death], str]) -> int:
    """Run work(reporter) in a guarded child, replaced if killed by a signal (see the
    module's docstring); return the exit code (14 after a timeout kill)."""
    slot = mmap.mmap(-1, SLOT_SIZE)  # anonymous and shared: the child writes, we read
    return Guard(slot, settle, lambda: _spawn(slot, work)).run()


def _spawn(slot: mmap.mmap, work: Callable[[SlotReporter], int]) -> int:
    """Fork a worker into a process group of its own; its pid."""
    clear(slot)  # a dead worker's job is not the new one's
    guard_pid = os.getpid()
    _flush()  # nothing buffered before the fork is written twice
    # The worker starts with the forwarded signals blocked, until its own handlers are
    # in (SignalFlags.install_signals unblocks them): one sent while it boots waits for
    # them, instead of meeting the guard's handler and wake-up pipe, inherited (lost).
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    pid = os.fork()
    if pid == 0:  # the worker: never return into the caller's code
        signal.set_wakeup_fd(-1)
        exit_with(lambda: _child(guard_pid, slot, work), before_exit=_flush)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        os.setpgid(pid, pid)  # also done in the child: whichever runs first wins
    except OSError:
        pass
    return pid


def _child(guard_pid: int, slot: mmap.mmap, work: Callable[[SlotReporter], int]) -> int:
    os.setpgid(0, 0)  # a group of its own: the guard kills the job's subprocesses too
    _die_with_parent()
    if os.getppid() != guard_pid:  # the guard died before prctl took effect
        return exitcodes.ERROR
    return work(SlotReporter(slot))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL us when the guard dies, even by SIGKILL (as spawn.py does for
    the master's children; not imported from there, which would load the config stack)."""
    try:
        # The symbols already loaded (libc's among them): find_library would run ldconfig.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the worker's parent check remains
        pass


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _record_only(signum: int, frame: FrameType | None) -> None:
    """Do nothing: the wake-up fd carries the signal number to the loop."""


class Guard:
    """The guard's loop: forward signals, watch the slot's deadline, reap the worker."""

    def __init__(self, slot: mmap.mmap, settle: Callable[[Death], str],
                 spawn: Callable[[], int]) -> None:
        self.slot = slot
        self.settle = settle
        self.spawn = spawn
        self.pid = 0
        self.started_at = 0.0
        self.quick = 0  # workers in a row killed within MIN_LIFE of their start
        self.stopping = False  # a TERM or INT was forwarded: the worker is not replaced
        self.killed: SlotJob | None = None  # the job the worker was killed for
        self.term_sent_at: float | None = None
        self.kill_sent = False

    def start(self) -> None:
        self.pid = self.spawn()
        self.started_at = time.monotonic()
        self.killed, self.term_sent_at, self.kill_sent = None, None, False

    def run(self) -> int:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in (*FORWARDED, signal.SIGCHLD):
            signal.signal(signum, _record_only)
        self.start()
        while True:
            self.forward(read_fd)
            status = self.reaped()
            if status is not None:
                if not self.replaced(status):
                    return self.exit_code(status)
                continue
            now = time.monotonic()
            wait = self.enforce(now)
            select.select([read_fd], [], [], wait)

    def forward(self, read_fd: int) -> None:
        """Pass the signals sent to `supervisor-q work` on to the worker."""
        try:
            data = os.read(read_fd, 512)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            if signum in FORWARDED:  # to the worker only: the job's own processes run on
                self.stopping = self.stopping or signum in STOPS
                try:
                    os.kill(self.pid, signum)
                except ProcessLookupError:
                    pass

    def reaped(self) -> int | None:
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        return status if pid == self.pid else None

    def replaced(self, status: int) -> bool:
        """After a death by a signal or a timeout kill: settle what it held, then start a
        new worker unless it was a timeout kill, a stop was forwarded or it ends a crash
        loop. True if one was started."""
        timeout = self.killed is not None  # settled even if it exited by itself after
        if not (timeout or os.WIFSIGNALED(status)):
            return False
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        self.signal(signal.SIGKILL)  # its job's subprocesses: the job may run again now
        job = self.killed if timeout else read_slot(self.slot)
        outcome = self.settle(Death(self.pid, job, signum, timeout))
        lived = time.monotonic() - self.started_at
        self.quick = self.quick + 1 if lived < MIN_LIFE else 0
        again = not (timeout or self.stopping or self.quick >= MAX_QUICK)
        how = "killed after its job's timeout" if timeout else f"killed by signal {signum}"
        name = f"job {_loggable(job.id)}" if job is not None else "no job"
        log.warning("worker pid=%s %s (%s): %s%s", self.pid, how, name,
                    _loggable(outcome, 400), "; starting a new worker" if again else "")
        if again:
            self.start()
        elif not (timeout or self.stopping):
            log.warning("%d workers in a row were killed within %gs of their start: "
                        "stopping (a crash loop)", self.quick, MIN_LIFE)
        return again

    def enforce(self, now: float) -> float:
        """Escalate on a job past its deadline; returns how long to wait until next look."""
        if self.term_sent_at is not None:
            if not self.kill_sent and now >= self.term_sent_at + KILL_GRACE:
                log.warning("worker pid=%s: still running job %s: SIGKILL", self.pid,
                            _loggable(self.killed.id) if self.killed else "?")
                self.kill_sent = True
                self.signal(signal.SIGKILL)
            return POLL if self.kill_sent else max(0.0, self.term_sent_at + KILL_GRACE - now)
        job = read_slot(self.slot)
        if job is None:
            return POLL
        if now < job.deadline + TERM_GRACE:
            return min(POLL, job.deadline + TERM_GRACE - now)
        log.warning("worker pid=%s: job %s passed its timeout: SIGTERM", self.pid,
                    _loggable(job.id))
        self.killed = job
        self.term_sent_at = now
        self.signal(signal.SIGTERM)
        return KILL_GRACE

    def signal(self, signum: int) -> None:
        """Signal the worker's whole group: a timed-out job's subprocesses go too."""
        try:
            os.killpg(self.pid, signum)  # run_guarded made the group before this loop
        except ProcessLookupError:
            pass

    def exit_code(self, status: int) -> int:
        """The worker's exit code; 14 after a timeout kill (the job settled first)."""
        if self.killed is not None:
            return exitcodes.TIMEOUT
        code = os.waitstatus_to_exitcode(status)
        if code < 0:  # killed by a signal: die of the same one, as the worker would have
            _flush()
            if -code != signal.SIGKILL:  # (its handler cannot be set: always default)
                signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
            return 128 - code
        return code
