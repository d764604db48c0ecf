"""One program's children: keep `target` of them alive, stop extras, back off crash loops,
and escalate stuck jobs past their deadline.

The pool owns its size (`target`, from `scaling`), its lifecycle `mode` and `paused`;
commands, signals and reloads change them through the "lifecycle and size" methods.
It never talks to Redis: jobs interrupted here are returned as `Handback`s and the
arbiter settles them.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from supervisor_q import exitcodes
from supervisor_q.config.loading import CommandProgram, ProgramConfig
from supervisor_q.config.schema import MAX_NUMPROCS
from supervisor_q.master import deadlines
from supervisor_q.master.process import (
    ACTIVE_STATES,
    DEAD_STATES,
    STOPPABLE_STATES,
    WAITING_STATES,
    ChildProcess,
    CurrentJob,
    RunRecord,
    State,
    backoff_delay,
    worst_state,
)
from supervisor_q.master.scaling import FleetCap, Scaling
from supervisor_q.master.schedule import AutoscaleInput
from supervisor_q.master.spawn import Spawner
from supervisor_q.worker.handback import Handback, LostJob

log = logging.getLogger("supervisor_q.pool")

# running: keep `target` children; stopped: `stop PROGRAM`, none until started; removing:
# gone from the config, none, and forgotten once its children exit; shutdown: for good.
Mode = Literal["running", "stopped", "removing", "shutdown"]
FATAL_RETRY = 60.0  # FATAL is an alert, not forever: try again after this long
# Forks per pool per loop turn: a big scale-up spreads over turns, so control commands,
# reports and deadlines keep being served in between (the loop does not sleep meanwhile).
SPAWNS_PER_TURN = 8

Why = Literal["timeout", "memory", "lost", "stopped"]


@dataclass
class Pool:
    program: ProgramConfig
    spawner: Spawner
    target: int = 0  # the computed size; `want` is what the tick keeps alive
    target_reason: str = "numprocs"
    paused: bool = False
    mode: Mode = "running"
    scaling: Scaling = field(default_factory=Scaling)
    children: list[ChildProcess] = field(default_factory=list)
    runs: dict[int, RunRecord] = field(default_factory=dict)  # keyed by id(child)
    backlog: bool = False  # the last tick left children to fork: the loop must not sleep

    @property
    def name(self) -> str:
        return self.program.name

    def run_of(self, child: ChildProcess) -> RunRecord:
        return self.runs.get(id(child)) or self.runs.setdefault(id(child), RunRecord())

    # -- counting --------------------------------------------------------------

    def active(self) -> list[ChildProcess]:
        """Children that count toward the target (not on their way out); a restarted
        command child until it exits (stop-then-start, as Supervisor: same ports)."""
        rolling = not isinstance(self.program, CommandProgram)
        return [c for c in self.children
                if c.state in STOPPABLE_STATES or self.run_of(c).done
                or (c.replaced and not rolling and c.state is State.STOPPING)]

    def alive(self) -> list[ChildProcess]:
        return [c for c in self.children if c.pid is not None and not c.reaped]

    def state(self) -> str:
        """The program's state for `status`: the worst of its children's."""
        return worst_state({c.state for c in self.children}, self.want)

    # -- lifecycle and size ------------------------------------------------------

    @property
    def want(self) -> int:
        """Children the tick keeps: the target while running, none otherwise (and never
        any for a periodic program, whatever `scale` or TTIN asked)."""
        return self.target if self.mode == "running" and self.program.kind != "periodic" else 0

    def scale_to(self, size: int, now_wall: datetime) -> None:
        """A manual size until the schedule's next rule (`scale`); starts a stopped pool."""
        self.scaling.override = (min(max(0, size), MAX_NUMPROCS), now_wall)
        self.mode = "running" if self.mode == "stopped" else self.mode  # the others are final

    def scale_by(self, delta: int, now_wall: datetime) -> None:
        """TTIN/TTOU: one more or one fewer than the current target, held like scale_to."""
        self.scaling.override = (min(max(0, self.target + delta), MAX_NUMPROCS), now_wall)

    def update_target(self, now_wall: datetime, load: AutoscaleInput | None,
                      fleet_cap: FleetCap | None = None) -> None:
        """Recompute the target from schedule, override and autoscale (`load`)."""
        target, reason = self.scaling.decide(self.program, now_wall, load, fleet_cap)
        if target != self.target:
            log.info("%s: target %d -> %d (%s)", self.name, self.target, target, reason)
        self.target, self.target_reason = target, reason

    def start(self, now: float) -> None:
        self.mode = "running" if self.mode == "stopped" else self.mode
        self.retry_fatal_now(now)

    def stop(self, now: float, reason: str = "stop command") -> None:
        self.mode = "stopped"
        for child in list(self.children):
            self.stop_child(child, now, reason)

    def restart(self, now: float, reason: str = "restart command") -> None:
        self.start(now)
        self.replace_children(now, reason)

    def replace_children(self, now: float, reason: str) -> None:
        """Graceful rolling replacement: each child finishes its job and exits; a stopping
        child does not count toward the target, so its replacement starts at once and the
        pool never runs short while old children drain."""
        for child in list(self.children):
            if child.state in STOPPABLE_STATES:
                child.replaced = True
                self.stop_child(child, now, reason)

    def pause(self, paused: bool) -> None:
        """`pause` (True) or `continue` (False): USR1/USR2 to the children, kept for new ones."""
        self.paused = paused
        self.signal_all(signal.SIGUSR1 if paused else signal.SIGUSR2)

    def remove(self, now: float) -> None:
        """Gone from the config: stop every child; the arbiter forgets the pool after."""
        self.stop(now, "removed from config")
        self.mode = "removing"

    def reconfigure(self, program: ProgramConfig, now: float) -> None:
        """A changed program: the new settings, the schedule again, FATAL retried."""
        self.program = program
        self.scaling.override = None
        self.retry_fatal_now(now)

    def shutdown(self, now: float, fast: bool) -> None:
        """The master is stopping: every child, at once with SIGKILL when fast."""
        self.mode = "shutdown"
        for child in list(self.children):
            if fast:
                self.stop_child(child, now, "fast shutdown", sig=signal.SIGKILL, wait=0)
            elif child.state is not State.STOPPING:
                self.stop_child(child, now, "shutdown")

    # -- the tick --------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Bring the pool toward its target; called every loop iteration."""
        self._promote_started(now)
        can_fork = self.spawner.ready(self, now)  # False while a preload zygote imports
        if can_fork:
            self._retry_waiting(now)
        gone = self._forget_exited()  # first: a replacement takes the slot left
        want = self.want
        active = self.active()
        missing = max(0, want - len(active)) if can_fork else 0
        self.backlog = missing > SPAWNS_PER_TURN
        if missing:
            for why in gone[:min(missing, SPAWNS_PER_TURN)]:  # one reason per spawn
                self._spawn(self._free_slot(), now, why)
        elif len(active) > want:
            self._stop_extras(active, len(active) - want, now)
        self._kill_overdue_stops(now)
        self._forget_exited()

    def _promote_started(self, now: float) -> None:
        # A worker counts as started once it has imported its modules (its ready report)
        # AND lived startsecs; a command program after startsecs alone.
        needs_report = not isinstance(self.program, CommandProgram)
        for child in self.children:
            if child.state is State.STARTING and child.started_at is not None:
                if needs_report and not self.run_of(child).ready:
                    continue
                if now - child.started_at >= self.program.startsecs:
                    child.failures = 0
                    child.move_to(State.RUNNING, "started", now)  # STARTING -> RUNNING

    def _retry_waiting(self, now: float) -> None:
        for child in self.children:
            run = self.run_of(child)
            if child.state in WAITING_STATES and run.retry_at is not None:
                if now >= run.retry_at and self.mode == "running":
                    why = "backoff over" if child.state is State.BACKOFF else "retry after fatal"
                    self._spawn(child, now, why)  # BACKOFF/FATAL -> STARTING

    def _free_slot(self) -> ChildProcess:
        used = {c.slot for c in self.children if not c.replaced}  # keep restarted slots
        slot = next(n for n in range(1, len(used) + 2) if n not in used)
        child = ChildProcess(self.name, slot)
        self.children.append(child)
        return child

    def _spawn(self, child: ChildProcess, now: float, reason: str) -> None:
        child.queues = self.scaling.balancer.pick(self.program, self.active())
        try:
            spawned = self.spawner.spawn(self.program, child, self.paused)
        except OSError as exc:  # fork failed (EAGAIN, ENOMEM): back off, never spin
            log.error("%s: fork failed: %s", child.name, exc)
            if child.state is State.EXITED:
                child.spawned(-1, -1, None, now, "fork failed")
            self._failed_start(child, now, f"fork failed: {exc}")
            return
        child.spawned(spawned.pid, spawned.pgid, None, now, reason)
        outputs = dict(spawned.outputs)
        self.runs[id(child)] = RunRecord(fd=spawned.report_fd, outputs=outputs, slot=spawned.slot)

    def _stop_extras(self, active: list[ChildProcess], count: int, now: float) -> None:
        """Scale down: children with no process first, then idle ones, newest first;
        busy children only when nothing idle is left (they finish their job first)."""
        def order(c: ChildProcess) -> tuple:
            no_process = c.state in DEAD_STATES
            return (not no_process, c.job is not None, -(c.started_at or 0))

        for child in sorted(active, key=order)[:count]:
            if child.state is State.EXITED:
                self.run_of(child).done = False  # a finished command slot: just forget it
                continue
            self.stop_child(child, now, "scale down")

    def stop_child(self, child: ChildProcess, now: float, reason: str,
                   sig: int = signal.SIGTERM, wait: float | None = None) -> None:
        """Ask a child to finish its job and exit; SIGKILL after stopwaitsecs."""
        if child.state in WAITING_STATES:
            child.move_to(State.EXITED, reason, now)  # BACKOFF/FATAL -> EXITED: no process
            return
        if child.state not in ACTIVE_STATES:
            return
        grace = self.program.stopwaitsecs if wait is None else wait
        # After SIGKILL there is nothing left to escalate to.
        self.run_of(child).stop_deadline = None if sig == signal.SIGKILL else now + grace
        child.move_to(State.STOPPING, reason, now)  # STARTING/RUNNING -> STOPPING
        if isinstance(self.program, CommandProgram) and sig == signal.SIGTERM:
            sig = getattr(signal, "SIG" + self.program.stopsignal)  # the polite signal
        self.signal(child, sig)

    def _kill_overdue_stops(self, now: float) -> None:
        for child in self.children:
            run = self.run_of(child)
            if child.state is State.STOPPING and run.stop_deadline is not None:
                if now >= run.stop_deadline and child.signallable:
                    log.warning("%s pid=%s did not stop within %.0fs: SIGKILL", child.name,
                                child.pid, self.program.stopwaitsecs)
                    run.stop_deadline = None
                    self.signal(child, signal.SIGKILL)

    def _forget_exited(self) -> list[str]:
        """Drop exited records; reasons for the next spawns (replacements of wanted first)."""
        keep, gone = [], []
        extra = len(self.active()) - self.want
        for child in self.children:
            done = self.run_of(child).done
            if child.state is State.EXITED and (not done or extra > 0):
                extra, gone = (extra - 1, gone) if done else (extra, [*gone, child.pid])
                self.runs.pop(id(child), None)
                continue
            keep.append(child)
        self.children = keep
        return [f"replaces pid={p}" for p in gone] + ["scale up" if keep else "start"] * self.want

    # -- signals ---------------------------------------------------------------

    def signal(self, child: ChildProcess, sig: int) -> None:
        """Signal the child's whole process group, never a reaped pid."""
        if not child.signallable or child.pgid is None or child.pgid <= 0:
            return
        try:
            self.spawner.kill(child.pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            log.error("%s: cannot signal group %s: %s", child.name, child.pgid, exc)

    def signal_all(self, sig: int) -> None:
        for child in self.children:
            if child.state in ACTIVE_STATES:
                self.signal(child, sig)

    # -- deadlines -------------------------------------------------------------

    def enforce_deadlines(self, now: float) -> None:
        """A job past its deadline: SIGTERM the group, then SIGKILL (the C-code case)."""
        deadlines.enforce(self, now)

    def next_deadline(self) -> float | None:
        """The earliest moment enforce_deadlines or tick has something to do."""
        return 0.0 if self.backlog else deadlines.earliest(self)

    def kill_for_memory(self, child: ChildProcess) -> None:
        self.run_of(child).kill_reason = "memory"
        self.signal(child, signal.SIGKILL)

    # -- reports from the child's pipe -------------------------------------------

    def child_ready(self, child: ChildProcess, generation: float | None) -> None:
        """The child imported its modules and is about to take jobs."""
        self.run_of(child).ready = True
        child.generation = generation

    def job_started(self, child: ChildProcess, job_id: str, name: str, queue: str,
                    timeout: float, attempts: int, now: float) -> None:
        child.job = CurrentJob(job_id, name, queue, now, now + timeout)
        run = self.run_of(child)
        run.attempts = attempts
        run.term_sent_at = None

    def job_finished(self, child: ChildProcess, job_id: str) -> None:
        if child.job is not None and child.job.id == job_id:
            child.job = None
            child.jobs_done += 1
            self.run_of(child).term_sent_at = None

    # -- exits -----------------------------------------------------------------

    def find(self, pid: int) -> ChildProcess | None:
        for child in self.children:
            if child.pid == pid and not child.reaped:
                return child
        return None

    def reaped(self, child: ChildProcess, status: int, now: float) -> Handback | None:
        """waitpid returned status for child: decide its next state; return its job, if any."""
        job = child.job
        run = self.run_of(child)
        how = child.record_exit(status)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        handback = None
        if job is not None:
            why: Why = run.kill_reason or ("stopped" if child.state is State.STOPPING else "lost")
            handback = Handback(LostJob(job.id, job.queue, job.name), run.attempts, why, how)
        if child.state is State.STOPPING:
            child.move_to(State.EXITED, how, now)  # STOPPING -> EXITED
        elif run.kill_reason is not None or code in self._expected_codes():
            worker = self.program.kind == "worker"  # the exit codes of exitcodes.py
            label = exitcodes.DESCRIPTIONS.get(code, how) if worker and code is not None else how
            child.failures = 0
            self._exited(child, now, label)
        elif child.state is State.STARTING:
            self._failed_start(child, now, how)
        else:  # a crash after startsecs: restart it at once, it is not a crash loop
            log.warning("%s pid=%s %s unexpectedly", child.name, child.pid, how)
            self._exited(child, now, how)
        run.kill_reason = None
        run.fd = None
        return handback

    def _expected_codes(self) -> frozenset[int]:
        if isinstance(self.program, CommandProgram):
            return frozenset(self.program.exitcodes)
        return exitcodes.EXPECTED

    def _exited(self, child: ChildProcess, now: float, reason: str) -> None:
        child.move_to(State.EXITED, reason, now)  # STARTING/RUNNING -> EXITED
        program = self.program
        if isinstance(program, CommandProgram):
            code = os.WEXITSTATUS(child.last_exit_status or 0)
            expected = code in program.exitcodes and os.WIFEXITED(child.last_exit_status or 0)
            restart = program.autorestart is True or (
                program.autorestart == "unexpected" and not expected)
            if not restart:
                self.run_of(child).done = True  # stays in its slot, not respawned

    def _failed_start(self, child: ChildProcess, now: float, how: str) -> None:
        child.failures += 1
        run = self.run_of(child)
        if child.failures >= max(1, self.program.startretries):
            run.retry_at = now + FATAL_RETRY
            log.error("%s: %d quick failures (%s): FATAL; retrying in %.0fs", child.name,
                      child.failures, how, FATAL_RETRY)
            if child.state is State.STARTING:
                child.move_to(State.BACKOFF, how, now)  # STARTING -> BACKOFF
            child.move_to(State.FATAL, "too many quick failures", now)  # BACKOFF -> FATAL
        else:
            delay = backoff_delay(child.failures)
            run.retry_at = now + delay
            child.move_to(State.BACKOFF, f"{how}; retry in {delay:.1f}s", now)

    def retry_fatal_now(self, now: float) -> None:
        """`start PROGRAM` or a config change: FATAL children try again at once."""
        for child in self.children:
            self.run_of(child).done = False
            if child.state in WAITING_STATES:
                child.failures = 0
                self.run_of(child).retry_at = now
