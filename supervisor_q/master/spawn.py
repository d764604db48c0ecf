"""Fork a child and set it up; the seam unit tests replace with a fake spawner.

Fork, not exec: a forked child shares the master's imported libraries copy-on-write
(fast to start, small USS) and then imports the program's job modules itself, so it
always runs the code now on disk. The master never imports job modules.
After fork the child: new process group, parent-death signal, default signal
handlers, inherited fds closed, its own Redis connection, its own proctitle.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import gc
import logging
import mmap
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from supervisor_q import exitcodes
from supervisor_q.config.loading import CommandProgram, ProgramConfig, WorkerProgram
from supervisor_q.config.substitute import substitute
from supervisor_q.forked import exit_with
from supervisor_q.master import capture
from supervisor_q.master.privileges import CannotSwitch, apply_umask, drop_privileges
from supervisor_q.master.process import ChildProcess
from supervisor_q.proctitle import set_title
from supervisor_q.queue.backend import RESERVATION_MARGIN, RedisQueue, connect
from supervisor_q.queue.restart import read_generation

# The worker's own modules are imported here, in the master, so every child shares them
# copy-on-write and starts faster; the program's job modules are imported in the child only.
from supervisor_q.worker import fence
from supervisor_q.worker.boot import BootError, import_job_modules, run_setup
from supervisor_q.worker.joblog import JobLog
from supervisor_q.worker.jobslot import keep_from_forks, shared_slot
from supervisor_q.worker.loop import MAX_BLOCK, Worker, WorkerSettings
from supervisor_q.worker.report import PipeReporter, Reporter
from supervisor_q.worker.slotreport import SummaryReporter

if TYPE_CHECKING:
    from supervisor_q.master.guardian import Guardian
    from supervisor_q.master.pool import Pool

log = logging.getLogger("supervisor_q.spawn")

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Spawned:
    pid: int
    pgid: int
    report_fd: int | None  # the master's read end of the child's report pipe
    outputs: dict[str, int] = field(default_factory=dict)  # stream -> read end (capture.py)
    slot: mmap.mmap | None = None  # a worker child's job slot (jobslots.py)


class Spawner(Protocol):
    def spawn(self, program: ProgramConfig, child: ChildProcess, paused: bool) -> Spawned: ...
    def kill(self, pgid: int, sig: int) -> None: ...
    def ready(self, pool: Pool, now: float) -> bool: ...


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library (prctl), through the process's own symbols: once per process, and
    inherited by its forks. ctypes.util.find_library ran `ldconfig -p` (a subprocess)
    in every child, copying pages of a preloaded child's zygote as well."""
    return ctypes.CDLL(None, use_errno=True)


def _set_parent_death_signal() -> None:
    """Ask Linux to SIGKILL us when the master dies, even by SIGKILL."""
    try:
        libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the worker's parent check remains
        pass


def _close_inherited_fds(keep: set[int]) -> None:
    """Close everything but stdio and keep (control socket, other children's pipes, Redis)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _widen_pipe(fd: int) -> None:
    """A child running thousands of jobs a second writes ~1 MB/s of reports and the master
    reads them in batches (arbiter.REPORT_BATCH): a 64 KiB pipe could fill and stall the
    child in os.write, so ask Linux for 1 MiB (the unprivileged maximum)."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (OSError, AttributeError):  # not Linux, or a lower pipe-max-size: keep the default
        pass


DEFERRED_AT_FORK = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
                    signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU}


def _fork_deferring_signals() -> int:
    """os.fork(), with the master's signals pending in the child until _reset_signals.

    A signal sent to the new child before it resets its handlers would run the master's
    handler in the child and be lost (a child TERM'd at birth would then live on);
    pending, it is delivered by the default action once the handlers are reset."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, DEFERRED_AT_FORK)
    pid = os.fork()
    if pid != 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return pid


def _fork_capturing(program: ProgramConfig) -> tuple[int, capture.Pipes]:
    """_fork_deferring_signals, with the child's stdout/stderr pipes (capture.py)."""
    pipes = capture.make_pipes(program)
    try:
        return _fork_deferring_signals(), pipes
    except OSError:
        capture.close_all(pipes)
        raise


def _reset_signals() -> None:
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTTIN,
                signal.SIGTTOU, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


class ForkSpawner:
    """Forks children for the arbiter."""

    def __init__(self, redis_url: str, master_pid: int | None = None,
                 guardian: Guardian | None = None) -> None:
        self.redis_url = redis_url
        self.master_pid = master_pid or os.getpid()
        self.guardian = guardian  # told every child's group, to kill should the master die
        try:
            libc()  # loaded once here: every child inherits it
        except OSError:
            pass

    def kill(self, pgid: int, sig: int) -> None:
        """Signal a child's whole process group (its job's subprocesses too)."""
        os.killpg(pgid, sig)

    def ready(self, pool: Pool, now: float) -> bool:
        """True when the pool may fork now (a preload zygote may still be importing:
        master/zygote.py's PreloadSpawner)."""
        return True

    def spawn(self, program: ProgramConfig, child: ChildProcess, paused: bool) -> Spawned:
        read_fd, write_fd = os.pipe()
        os.set_inheritable(write_fd, False)
        _widen_pipe(write_fd)
        # Collect, then freeze what survives, and never unfreeze: neither the children nor
        # the master's own later collections walk these objects again, so their pages stay
        # shared copy-on-write instead of being copied into every child (lower USS).
        gc.collect()
        gc.freeze()
        if threading.active_count() > 1:  # a thread's locks would be copied held
            log.warning("forking with %d threads (the master must fork single-threaded)",
                        threading.active_count())
        made = shared_slot() if isinstance(program, WorkerProgram) else None
        try:
            pid, pipes = _fork_capturing(program)
        except OSError:
            _drop_slot(made)
            raise
        if pid == 0:  # child: never return into the master's code
            def child_body() -> int:
                os.close(read_fd)
                capture.in_child(pipes, program)
                slot = made[1] if made else None  # the inherited map (its fd closed)
                return self._child_main(program, child, write_fd, paused, slot)

            exit_with(child_body)
        os.close(write_fd)
        _handed_over(made)
        try:
            os.setpgid(pid, pid)  # also done in the child: whichever runs first wins
        except OSError:
            pass
        if self.guardian is not None:
            self.guardian.watch(pid)
        os.set_blocking(read_fd, False)
        if isinstance(program, CommandProgram):
            os.close(read_fd)
            read_fd = None
        return Spawned(pid, pid, read_fd, capture.in_master(pipes), made[1] if made else None)

    def _child_main(self, program: ProgramConfig, child: ChildProcess, report_fd: int,
                    paused: bool, slot: mmap.mmap | None) -> int:
        os.setpgid(0, 0)
        _set_parent_death_signal()
        _reset_signals()
        if os.getppid() != self.master_pid:  # the master died before prctl took effect
            return exitcodes.ERROR
        _close_inherited_fds({report_fd})
        number = program.process_num(child.slot)
        os.environ.update({key: substitute(value, program.name, number)
                           for key, value in program.environment.items()})
        try:
            if program.directory:
                os.chdir(program.directory)
        except OSError as exc:  # one line, like a failed user switch: not a traceback
            print(f"supervisor-q: {child.name}: cannot enter directory {program.directory!r}: "
                  f"{exc.strerror}", file=sys.stderr, flush=True)
            return exitcodes.BOOT_ERROR
        apply_umask(program.umask)
        try:
            drop_privileges(program.user)
        except CannotSwitch as exc:
            print(f"supervisor-q: {child.name}: {exc}", file=sys.stderr, flush=True)
            return exitcodes.BOOT_ERROR
        if isinstance(program, CommandProgram):
            os.close(report_fd)
            _exec_command(program, child)
        assert isinstance(program, WorkerProgram)
        return _run_worker(program, child, report_fd, paused, self.redis_url, self.master_pid,
                           slot)


def _exec_command(program: CommandProgram, child: ChildProcess) -> None:
    set_title(f"supervisor-q {program.name} exec")
    number = program.process_num(child.slot)
    argv = [substitute(arg, program.name, number) for arg in program.argv]
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"supervisor-q: cannot exec {argv[0]!r}: {exc}", file=sys.stderr)
        os._exit(127)


def _handed_over(made: tuple[int, mmap.mmap] | None) -> None:
    """The child has the slot's map: the fd is of no more use, and no later child may
    inherit the map."""
    if made:
        os.close(made[0])
        keep_from_forks(made[1])


def _drop_slot(made: tuple[int, mmap.mmap] | None) -> None:
    if made:
        os.close(made[0])
        made[1].close()


def _run_worker(program: WorkerProgram, child: ChildProcess, report_fd: int, paused: bool,
                redis_url: str, master_pid: int, slot: mmap.mmap | None) -> int:
    set_title(f"supervisor-q {child.name} starting")
    try:
        boot_program(program)
    except BootError as exc:
        log.error("%s: %s", child.name, exc)
        return exitcodes.BOOT_ERROR
    return start_worker(program, child, report_fd, paused, redis_url, master_pid, slot=slot)


def boot_program(program: WorkerProgram) -> None:
    """The program's directory on sys.path, its `setup:` hook, then its `import:` modules
    (in each child, or once in a preload zygote: master/zygote.py). Raises BootError."""
    if program.directory and program.directory not in sys.path:
        sys.path.insert(0, program.directory)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    run_setup(program.setup)  # django:setup, after `environment:` is in os.environ
    import_job_modules(program.imports)


def start_worker(program: WorkerProgram, child: ChildProcess, report_fd: int, paused: bool,
                 redis_url: str, master_pid: int, preloaded: bool = False,
                 generation: float | None = None, queue: RedisQueue | None = None,
                 slot: mmap.mmap | None = None) -> int:
    """Run the worker loop of a child whose modules are imported. A preloaded child
    (forked by a zygote) started with the zygote's `generation`: it does not follow the
    restart signal itself, the master replaces it from a new zygote; it may get `queue`,
    built (never connected) by the zygote for redis_url (prepared_queue). With a job
    `slot` it reports through it (worker/slotreport.py), else with S and E lines."""
    label = child.name
    settings = WorkerSettings(
        queues=child.queues or program.queues, imports=program.imports, setup=program.setup,
        tries=program.tries,
        backoff=program.backoff, timeout=program.timeout, sleep=program.sleep, rest=program.rest,
        max_jobs=program.max_jobs, max_time=program.max_time, memory=program.memory,
        prefetch=program.prefetch, keep_jobs=program.keep_jobs,
        keep_jobs_max=program.keep_jobs_max, label=label)
    if queue is None:
        queue = prepared_queue(program, redis_url)
    if not preloaded:
        try:
            generation = read_generation(queue.client)
        except Exception:  # noqa: BLE001 - Redis down: the worker's loop waits for it
            generation = None
    reporter: Reporter = (PipeReporter(report_fd) if slot is None
                          else SummaryReporter(report_fd, slot))
    if program.log_jobs:  # a line at each job's start and end (worker/joblog.py)
        reporter = JobLog(reporter, label)
    worker = Worker(settings, queue, reporter=reporter, started_with=generation,
                    parent_pid=master_pid, follows_restart=not preloaded,
                    fence=fence.inherited())
    worker.paused = paused
    worker.install_signals()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return worker.run()


def prepared_queue(program: WorkerProgram, redis_url: str) -> RedisQueue:
    """The worker's queue and client; no connection is made until its first command."""
    return RedisQueue(connect(redis_url, socket_timeout=MAX_BLOCK + 10),
                      margin=reservation_margin(program))


def reservation_margin(program: WorkerProgram) -> float:
    """The reservation outlives the job's timeout by this much (retry_after may widen it)."""
    if program.retry_after is not None:
        return max(RESERVATION_MARGIN, program.retry_after - program.timeout)
    return RESERVATION_MARGIN
