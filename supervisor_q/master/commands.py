"""What the master does for each control command, and the reload diff it applies.

One path for every trigger: SIGHUP, `reload` and a conf.d edit all end in
apply_reload; `restart PROGRAM` and a replaced program both use replace_children.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING, Any

import psutil

from supervisor_q.config.loading import ConfigError, ProgramConfig, WorkerProgram, diff_programs
from supervisor_q.ctl.protocol import ControlError
from supervisor_q.master.pool import Pool
from supervisor_q.master.process import State
from supervisor_q.master.schedule import next_firing, scheduled_target

if TYPE_CHECKING:
    from supervisor_q.master.arbiter import Arbiter

log = logging.getLogger("supervisor_q.arbiter")


def handle(arbiter: Arbiter, command: str, args: dict[str, Any]) -> Any:
    if command == "ping":
        return "pong"
    if command == "status":
        return status(arbiter)
    if command == "reload":
        try:
            return arbiter.reload()
        except ConfigError as exc:
            raise ControlError(f"invalid config, nothing changed:\n{exc}") from None
    if command == "shutdown":
        arbiter.shutdown("fast" if args.get("fast") else "graceful")
        return "shutting down"
    if command in ("pause", "continue"):
        return pause_or_continue(arbiter, command, args.get("program"))
    pool = _pool(arbiter, args.get("program"))
    now = arbiter.clock.monotonic()
    if command == "scale":
        size = args.get("numprocs")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ControlError("scale: numprocs must be an integer >= 0")
        arbiter.extra[pool.name].override = (size, arbiter.clock.now())
        pool.stopped = False
        arbiter.update_target(pool)
        return f"{pool.name}: target {pool.target} (until the schedule's next rule)"
    if command == "start":
        pool.stopped = False
        pool.retry_fatal_now(now)
        return f"{pool.name}: started"
    if command == "stop":
        pool.stopped = True
        for child in list(pool.children):
            pool.stop_child(child, now, "stop command")
        return f"{pool.name}: stopping"
    if command == "restart":
        pool.stopped = False
        pool.retry_fatal_now(now)
        replace_children(pool, now, "restart command")
        return f"{pool.name}: restarting children after their current job"
    raise ControlError(f"unknown command {command!r}")


def pause_or_continue(arbiter: Arbiter, command: str, name: object) -> str:
    """USR1/USR2 mean pause/continue to a worker only; to any other program they are
    whatever it makes of them (most die of them), so command programs are left alone."""
    if name:
        pool = _pool(arbiter, name)
        if not isinstance(pool.program, WorkerProgram):
            raise ControlError(f"{pool.name} is a command program; {command} applies to "
                               "worker programs only")
        pools = [pool]
    else:
        pools = [p for p in arbiter.pools.values() if isinstance(p.program, WorkerProgram)]
    for pool in pools:
        pool.paused = command == "pause"
        pool.signal_all(signal.SIGUSR1 if pool.paused else signal.SIGUSR2)
    return f"{command}d {', '.join(p.name for p in pools) or 'no worker programs'}"


def _pool(arbiter: Arbiter, name: object) -> Pool:
    if not isinstance(name, str) or name not in arbiter.pools:
        known = ", ".join(sorted(arbiter.pools)) or "none"
        raise ControlError(f"no program named {name!r} (programs: {known})")
    return arbiter.pools[name]


def replace_children(pool: Pool, now: float, reason: str) -> None:
    """Graceful rolling replacement: each child finishes its job and exits; a stopping
    child does not count toward the target, so its replacement starts at once and the
    pool never runs short while old children drain."""
    for child in list(pool.children):
        if child.state in (State.STARTING, State.RUNNING):
            pool.stop_child(child, now, reason)
        elif child.state in (State.BACKOFF, State.FATAL):
            pool.stop_child(child, now, reason)


def apply_reload(arbiter: Arbiter, new: dict[str, ProgramConfig]) -> str:
    """Apply only the difference between the running config and new."""
    plan = diff_programs(arbiter.programs, new)
    now = arbiter.clock.monotonic()
    for name in plan.added:
        arbiter.add_pool(new[name])
    for name in plan.removed:
        pool = arbiter.pools[name]
        arbiter.extra[name].removing = True
        pool.stopped = True
        pool.target = 0
        for child in list(pool.children):
            pool.stop_child(child, now, "removed from config")
    for name in plan.rescaled + plan.replaced:
        pool = arbiter.pools[name]
        pool.program = new[name]
        arbiter.extra[name].override = None  # a reload re-applies the schedule
        pool.retry_fatal_now(now)
    for name in plan.replaced:
        replace_children(arbiter.pools[name], now, "config changed")
    for name in plan.rescaled:
        arbiter.update_target(arbiter.pools[name])
    arbiter.programs = dict(new)
    parts = [f"{label}: {', '.join(names)}" for label, names in (
        ("added", plan.added), ("removed", plan.removed), ("rescaled", plan.rescaled),
        ("replaced", plan.replaced)) if names]
    summary = "; ".join(parts) or "no changes"
    log.info("config reloaded: %s", summary)
    return summary


def status(arbiter: Arbiter) -> dict[str, Any]:
    now = arbiter.clock.monotonic()
    wall = arbiter.clock.now()
    programs = []
    for pool in arbiter.pools.values():
        program = pool.program
        decision = scheduled_target(program.schedule, program.timezone, wall)
        upcoming = next_firing(program.schedule, program.timezone, wall)
        programs.append({
            "name": pool.name,
            "kind": program.kind,
            "target": 0 if pool.stopped else pool.target,
            "target_reason": "stopped" if pool.stopped else pool.target_reason,
            "schedule_rule": decision.cron if decision else None,
            "next_transition": upcoming.isoformat() if upcoming else None,
            "state": pool.state(),
            "paused": pool.paused,
            "queues": list(program.queues) if isinstance(program, WorkerProgram) else [],
            "processes": [_process(arbiter, pool, c, now) for c in pool.children
                          if c.state is not State.EXITED or pool.run_of(c).done],
        })
    return {
        "programs": programs,
        "master": {
            "pid": os.getpid(),
            "uptime": round(now - arbiter.started, 3),
            "config_dir": str(arbiter.config_dir),
            "stopping": arbiter.stopping,
            "restart_signal": arbiter.restart_generation,
            "restart_seen_ago": (None if arbiter.restart_seen_at is None
                                 else round(now - arbiter.restart_seen_at, 3)),
        },
    }


def _process(arbiter: Arbiter, pool: Pool, child, now: float) -> dict[str, Any]:  # noqa: ANN001
    rss = None
    if child.signallable:
        try:
            rss = psutil.Process(child.pid).memory_info().rss
        except psutil.Error:
            rss = None
    job = None
    if child.job is not None:
        job = {"id": child.job.id, "name": child.job.name, "queue": child.job.queue,
               "runtime": round(now - child.job.started_at, 3)}
    current = arbiter.restart_generation
    stale = (isinstance(pool.program, WorkerProgram) and current is not None
             and child.state in (State.STARTING, State.RUNNING, State.STOPPING)
             and (child.generation is None or child.generation < current))
    return {
        "pid": child.pid if child.pid and child.pid > 0 else None,
        "slot": child.slot,
        "name": child.name,
        "state": child.state.value,
        "uptime": round(child.uptime(now), 3),
        "jobs_done": child.jobs_done,
        "job": job,
        "rss": rss,
        "pre_restart_code": stale,
    }
