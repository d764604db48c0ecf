"""Child process states, the edges between them, and the record of one child.

This module is the vocabulary the master uses to talk about its children: the
`State` enum (its values are the lowercase strings shown by `status --json`),
the allowed transitions as data, named groups of states, `ChildProcess`,
whose only state writer is `move_to()`, and the pool's `RunRecord` of one run.
It also holds two pure helpers that every pool needs: `backoff_delay()` and
`exit_reason()`.

It imports nothing else from the package (like Supervisor's `states.py`), so
pools, the arbiter, the control server and tests can all depend on it.
"""

from __future__ import annotations

import enum
import logging
import mmap
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger("supervisor_q.process")

KillReason = Literal["timeout", "memory"]  # why the master killed a child mid-job


class State(enum.StrEnum):
    """Lifecycle of one child slot (Supervisor's model, STOPPED folded into EXITED)."""

    STARTING = "starting"  # forked, not yet alive for startsecs
    RUNNING = "running"  # alive for startsecs: a start that counts as good
    BACKOFF = "backoff"  # died while STARTING; waiting before the next try
    STOPPING = "stopping"  # asked to stop (TERM sent), not yet reaped
    EXITED = "exited"  # no process; never started, stopped, or exited after RUNNING
    FATAL = "fatal"  # too many quick failures; an alert, retried later by the pool


# Every legal edge. Anything not listed raises InvalidTransition, including
# X -> X: a repeated move is a bug in the caller, not a no-op to hide.
ALLOWED: Mapping[State, frozenset[State]] = {
    State.STARTING: frozenset({
        State.RUNNING,  # survived startsecs
        State.BACKOFF,  # died before startsecs: counts as a failed start
        State.STOPPING,  # stop/scale-down/shutdown while still starting
        # A clean exit before startsecs (a recycling exit, or a worker that saw
        # the restart signal at boot) is not a crash; ARCHITECTURE.md's reliability
        # rule 8: clean recycling exits never count, so it must not go through BACKOFF.
        State.EXITED,
    }),
    State.RUNNING: frozenset({
        State.STOPPING,  # we asked it to stop
        State.EXITED,  # it exited on its own (recycle, crash after startsecs)
    }),
    State.BACKOFF: frozenset({
        State.STARTING,  # the delay is over: try again
        State.FATAL,  # startretries exhausted
        # Not STOPPING: in BACKOFF there is no process to signal, so a stop
        # completes at once (Supervisor's BACKOFF -> STOPPED).
        State.EXITED,
    }),
    State.STOPPING: frozenset({
        State.EXITED,  # reaped, whatever the exit status
    }),
    State.EXITED: frozenset({
        State.STARTING,  # (re)spawn
    }),
    State.FATAL: frozenset({
        State.STARTING,  # FATAL is an alert that the pool retries after a long delay
        # A stop/scale-down of a FATAL slot clears the alert; no process exists,
        # so like BACKOFF it goes straight to EXITED.
        State.EXITED,
    }),
}

# A live process exists (forked and not yet reaped) in these states.
ALIVE_STATES: frozenset[State] = frozenset({State.STARTING, State.RUNNING, State.STOPPING})
# States in which sending a signal is meaningful. Equal to ALIVE_STATES, but
# named apart because callers must also check `ChildProcess.signallable`: the
# pid of a reaped child may already belong to someone else (ARCHITECTURE.md's reliability rule 4).
SIGNALLABLE_STATES: frozenset[State] = ALIVE_STATES
# States from which a stop request is accepted (the rest are stopped or stopping).
STOPPABLE_STATES: frozenset[State] = frozenset(
    {State.STARTING, State.RUNNING, State.BACKOFF, State.FATAL}
)
# No process exists in these states.
DEAD_STATES: frozenset[State] = frozenset(State) - ALIVE_STATES
# Alive and not on its way out.
ACTIVE_STATES: frozenset[State] = frozenset({State.STARTING, State.RUNNING})
# No process, waiting for a retry (the pool's retry_at).
WAITING_STATES: frozenset[State] = frozenset({State.BACKOFF, State.FATAL})
# Worst first: a program's state in `status` is the first of these any child is in.
SEVERITY: tuple[State, ...] = (State.FATAL, State.BACKOFF, State.STARTING, State.STOPPING)


def worst_state(states: set[State], wanted: int) -> str:
    """A program's state for `status`: the worst of its children's states."""
    for worst in SEVERITY:
        if worst in states:
            return worst.value
    if State.RUNNING in states:
        return State.RUNNING.value
    return "stopped" if wanted == 0 else State.EXITED.value


class InvalidTransition(RuntimeError):
    """A state change that ALLOWED does not list."""

    def __init__(self, name: str, old: State, new: State) -> None:
        super().__init__(f"{name}: {old} -> {new} is not an allowed transition")
        self.old = old
        self.new = new


@dataclass
class CurrentJob:
    """The job a child reported it is running; deadline is on the master's monotonic clock."""

    id: str
    name: str
    queue: str
    started_at: float
    deadline: float | None = None


@dataclass
class ChildProcess:
    """What the master knows about one child slot (`emails#3`) across its restarts.

    Fields other than `state` and `state_changed_at` may be set directly by
    the pool; the state moves only through `move_to()` so every change is
    checked and logged once.
    """

    program: str
    slot: int
    pid: int | None = None
    pgid: int | None = None
    state: State = State.EXITED  # a new slot has no process yet
    started_at: float | None = None  # monotonic, at the last spawn
    state_changed_at: float | None = None  # monotonic
    generation: float | None = None  # restart-signal value the child started with
    jobs_done: int = 0
    job: CurrentJob | None = None
    last_exit_status: int | None = None  # raw waitpid status
    reaped: bool = False
    failures: int = 0  # consecutive failed starts, for backoff and FATAL
    replaced: bool = False  # stopped by a restart: its successor takes this slot
    queues: tuple[str, ...] | None = None  # `balance:`'s pick at the last fork (None: all)
    master_id: str = ""  # the fleet id it was forked under (its reservations' holder)

    @property
    def name(self) -> str:
        return f"{self.program}#{self.slot}"

    @property
    def signallable(self) -> bool:
        """True when signalling `pid` reaches this child and nobody else."""
        return self.state in SIGNALLABLE_STATES and self.pid is not None and not self.reaped

    def move_to(self, new_state: State, reason: str, now: float) -> None:
        """Change state if ALLOWED permits it, stamp `now` and log one line."""
        old = self.state
        if new_state not in ALLOWED[old]:
            raise InvalidTransition(self.name, old, new_state)
        # A slot that never had a process is logged "new", not "exited" (it did not crash).
        shown = "new" if old is State.EXITED and self.state_changed_at is None else old
        self.state = new_state
        self.state_changed_at = now
        log.info("%s pid=%s %s -> %s (%s)", self.name, self.pid, shown, new_state, reason)

    def spawned(self, pid: int, pgid: int, generation: float | None, now: float,
                reason: str = "spawned") -> None:
        """Record a fresh fork and move to STARTING; resets the per-run fields."""
        # Check the edge before touching anything, so a bad call leaves the record intact.
        if State.STARTING not in ALLOWED[self.state]:
            raise InvalidTransition(self.name, self.state, State.STARTING)
        self.pid, self.pgid, self.generation = pid, pgid, generation
        # queue/fencing.py's MASTER_ID_ENV, as the child inherited it (a zygote's child is
        # handed it with each fork request)
        self.master_id = os.environ.get("SUPERVISOR_Q_MASTER_ID", "")
        self.started_at = now
        self.jobs_done = 0
        self.job = None
        self.reaped = False
        self.move_to(State.STARTING, reason, now)

    def record_exit(self, status: int) -> str:
        """Note that waitpid returned `status` for this child; returns its exit reason.

        The pid is kept for log lines, but `reaped` makes `signallable` false.
        The caller then moves the state (BACKOFF, EXITED, ...) as policy decides.
        """
        self.last_exit_status = status
        self.reaped = True
        self.job = None
        return exit_reason(status)

    def uptime(self, now: float) -> float:
        """Seconds since the last spawn while alive, else 0."""
        if self.started_at is None or self.state not in ALIVE_STATES:
            return 0.0
        return max(0.0, now - self.started_at)


def backoff_delay(failures: int, base: float = 1.0, cap: float = 60.0,
                  jitter: Callable[[], float] | None = random.random) -> float:
    """Seconds to wait after `failures` consecutive failures: base * 2**(n-1), capped, jittered.

    `jitter` returns a value in [0, 1) and takes off up to half the delay
    ("equal jitter"): a pool whose children all crash together spreads its
    retries, and the delay never drops below half the exponential value.
    Jitter is subtracted rather than added so the result never exceeds `cap`
    and children at the cap are spread too. `jitter=None` disables it.
    """
    if failures <= 0:
        return 0.0
    # Clamp the exponent: 2.0 ** 1100 overflows, and anything past 2**62 is capped anyway.
    raw = min(cap, base * 2.0 ** min(failures - 1, 62))
    if jitter is None:
        return raw
    fraction = min(max(jitter(), 0.0), 1.0)
    return raw - raw * 0.5 * fraction


def exit_reason(status: int) -> str:
    """Turn a raw waitpid status into "exited with 3" or "killed by signal 9"."""
    if os.WIFEXITED(status):
        return f"exited with {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    if os.WIFSTOPPED(status):  # only with WUNTRACED, which the master does not use
        return f"stopped by signal {os.WSTOPSIG(status)}"
    return f"unknown wait status {status}"


@dataclass
class RunRecord:
    """The pool's bookkeeping for one run of a child, beside its ChildProcess record."""

    retry_at: float | None = None  # BACKOFF/FATAL: when to try again
    stop_deadline: float | None = None  # STOPPING: when to SIGKILL
    kill_reason: KillReason | None = None  # why the master killed it, if it did
    term_sent_at: float | None = None
    attempts: int = 0  # attempts of the current job, as the child reported
    ready: bool = False
    done: bool = False  # a command program that exited and must not be restarted
    fd: int | None = None
    registered: bool = False  # fd watched by the arbiter's selector
    rearm_at: float = 0.0  # when the arbiter watches the fd again (reports are batched)
    buffer: bytes = b""
    garbled: int = 0  # unreadable report lines seen (reports.py: ReportReader.garbled)
    outputs: dict[str, int] = field(default_factory=dict)  # stdout/stderr read ends
    slot: mmap.mmap | None = None  # a worker child's job slot (jobslots.py); None: S/E lines
    slot_serial: int = 0  # the slot's last serial the master took in (jobslots.sync)
    slot_job: CurrentJob | None = None  # the job taken from it (an idle slot ends only it)
