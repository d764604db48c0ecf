"""What the master does for each control command, and the reload diff it applies.

Each command is a small handler in HANDLERS that validates its arguments and asks the
pool to change (Horizon's SupervisorCommands -> `$supervisor->scale()`). One path for
every reload trigger: SIGHUP, `reload` and a conf.d edit all end in apply_reload;
`restart PROGRAM` and a replaced program both use Pool.replace_children.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

from supervisor_q.config.loading import ConfigError, ProgramConfig, WorkerProgram, diff_programs
from supervisor_q.config.periodic import PeriodicProgram
from supervisor_q.config.schema import MAX_NUMPROCS
from supervisor_q.ctl.protocol import ControlError
from supervisor_q.master import addressing, periodic
from supervisor_q.master.pool import Pool
from supervisor_q.master.process import ACTIVE_STATES, ALIVE_STATES, State
from supervisor_q.master.schedule import next_firing, scheduled_target
from supervisor_q.master.zygote import preloading

if TYPE_CHECKING:
    from supervisor_q.master.arbiter import Arbiter

log = logging.getLogger("supervisor_q.arbiter")


def handle(arbiter: Arbiter, command: str, args: dict[str, Any]) -> Any:
    """Run one control command: look up its handler and let it ask the pool to change."""
    handler = HANDLERS.get(command)
    if handler is None:
        raise ControlError(f"unknown command {command!r}")
    return handler(arbiter, args)


def _ping(arbiter: Arbiter, args: dict[str, Any]) -> str:
    return "pong"


def _status(arbiter: Arbiter, args: dict[str, Any]) -> dict[str, Any]:
    return status(arbiter)


def _reload(arbiter: Arbiter, args: dict[str, Any]) -> str:
    try:
        return arbiter.reload()
    except ConfigError as exc:
        raise ControlError(f"invalid config, nothing changed:\n{exc}") from None


def _shutdown(arbiter: Arbiter, args: dict[str, Any]) -> str:
    arbiter.shutdown("fast" if args.get("fast") else "graceful")
    return "shutting down"


def _pause(arbiter: Arbiter, args: dict[str, Any]) -> str:
    return pause_or_continue(arbiter, "pause", args.get("program"))


def _continue(arbiter: Arbiter, args: dict[str, Any]) -> str:
    return pause_or_continue(arbiter, "continue", args.get("program"))


def _scale(arbiter: Arbiter, args: dict[str, Any]) -> str:
    pool = _pool(arbiter, args.get("program"))
    if pool.program.kind == "periodic":
        raise ControlError(f"{pool.name} is a periodic program: it has no processes to scale")
    size = args.get("numprocs")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_NUMPROCS:
        raise ControlError(f"numprocs must be a whole number from 0 to {MAX_NUMPROCS}")
    pool.scale_to(size, arbiter.clock.now())
    arbiter.update_target(pool)
    until = " (until the schedule's next rule)" if pool.program.schedule else ""
    return f"{pool.name}: target {pool.target}{until}"


def _start(arbiter: Arbiter, args: dict[str, Any]) -> str:
    now = arbiter.clock.monotonic()
    pools = addressing.resolve(arbiter.pools, args.get("program"))
    for pool in pools:  # priority order
        pool.start(now)
    return "; ".join(f"{pool.name}: started" for pool in pools)


def _stop(arbiter: Arbiter, args: dict[str, Any]) -> str:
    now = arbiter.clock.monotonic()
    pools = addressing.resolve(arbiter.pools, args.get("program"))[::-1]  # reverse priority
    for pool in pools:
        pool.stop(now)
    return "; ".join(f"{pool.name}: stopping" for pool in pools)


def _restart(arbiter: Arbiter, args: dict[str, Any]) -> str:
    now = arbiter.clock.monotonic()
    pools = addressing.resolve(arbiter.pools, args.get("program"))
    said = []
    for pool in pools:
        running = bool(pool.active())  # else nothing to replace: a start
        if preloading(pool.program):  # a new zygote imports, then replaces the children
            pool.start(now)
            arbiter.spawner.renew(pool.name)
        else:
            pool.restart(now)
        said.append(f"{pool.name}: " + ("restarting children after their current job"
                                        if running else "starting"))
    return "; ".join(said)


def _tail(arbiter: Arbiter, args: dict[str, Any]) -> dict[str, Any]:
    """A process's recent output (or its log file's path), or the master's own log."""
    stream, after, lines, slot = (args.get("stream", "stdout"), args.get("after"),
                                  args.get("lines", 10), args.get("slot"))
    if stream not in ("stdout", "stderr", "master"):
        raise ControlError("stream must be stdout, stderr or master")
    for value in (after, slot, lines):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):
            raise ControlError("after, slot and lines must be whole numbers >= 0")
    pool = None if stream == "master" else _pool(arbiter, args.get("program"))
    return arbiter.reports.output.tail(pool, slot, stream, after, lines)


Handler = Callable[["Arbiter", dict[str, Any]], Any]
HANDLERS: dict[str, Handler] = {
    "ping": _ping, "status": _status, "reload": _reload, "shutdown": _shutdown,
    "pause": _pause, "continue": _continue, "scale": _scale, "start": _start,
    "stop": _stop, "restart": _restart, "signal": addressing.send_signal,
    "pid": addressing.pids, "tail": _tail, "periodic": periodic.command,
}


def pause_or_continue(arbiter: Arbiter, command: str, name: object) -> str:
    """USR1/USR2 mean pause/continue to a worker only; to any other program they are
    whatever it makes of them (most die of them), so command programs are left alone.
    A periodic program (no processes) pauses its firing."""
    kinds = WorkerProgram | PeriodicProgram
    if addressing.is_single(arbiter.pools, name):
        pool = arbiter.pools[str(name)]
        if not isinstance(pool.program, kinds):
            raise ControlError(f"{pool.name} is a command program; {command} applies to "
                               "worker and periodic programs only")
    matched = addressing.resolve(arbiter.pools, name) if name else arbiter.pools.values()
    pools = [p for p in matched if isinstance(p.program, kinds)]
    for pool in pools:
        pool.pause(command == "pause")
    return f"{command}d {', '.join(p.name for p in pools) or 'no worker programs'}"


def restart_commands_on_deploy(arbiter: Arbiter, now: float) -> None:
    """`restart-workers` for command programs with `restart_on_deploy: true`: as
    `restart PROGRAM` does for a command program, a child started before the master saw
    the current restart signal is stopped and its successor, in the same slot, starts
    once it has exited (a port it holds is free again). With numprocs > 1 one process
    at a time: the next is stopped once the previous one's successor is RUNNING, so
    a successor that fails to start leaves the others running. A child started between
    the signal and the master's read of it (at most a second) is replaced too,
    needlessly but harmlessly."""
    arbiter.spawner.generation = arbiter.restart_generation  # preload zygotes' key
    seen = arbiter.restart_seen_at
    if seen is None or arbiter.restart_generation is None:
        return
    for pool in arbiter.pools.values():
        if getattr(pool.program, "restart_on_deploy", False) and pool.mode == "running":
            _roll_one(pool, seen, now)


def _roll_one(pool: Pool, seen: float, now: float) -> None:
    """Stop the next pre-signal child unless a replacement is still under way."""
    under_way = any(c.replaced or (c.state is not State.RUNNING and c.started_at is not None
                                   and c.started_at >= seen) for c in pool.children
                    if c.state is not State.EXITED or c.replaced)
    if under_way:
        return
    for child in pool.children:
        if (child.state in ACTIVE_STATES and child.started_at is not None
                and child.started_at < seen):
            child.replaced = True  # Pool.active() counts it until it exits: same slot
            pool.stop_child(child, now, "restart-workers (restart_on_deploy)")
            return


def _pool(arbiter: Arbiter, name: object) -> Pool:
    if not isinstance(name, str) or name not in arbiter.pools:
        known = ", ".join(sorted(arbiter.pools)) or "none"
        raise ControlError(f"no program named {name!r} (programs: {known})")
    return arbiter.pools[name]


def apply_reload(arbiter: Arbiter, new: dict[str, ProgramConfig]) -> str:
    """Apply only the difference between the running config and new."""
    plan = diff_programs(arbiter.programs, new)
    now = arbiter.clock.monotonic()
    for name in plan.added:
        arbiter.add_pool(new[name])
    for name in plan.removed:
        arbiter.pools[name].remove(now)
    for name in plan.rescaled + plan.replaced:
        arbiter.pools[name].reconfigure(new[name], now)  # a reload re-applies the schedule
    for name in plan.replaced:
        if preloading(new[name]):  # replaced once a new zygote has imported
            arbiter.spawner.renew(name)
        else:
            arbiter.pools[name].replace_children(now, "config changed")
    for name in plan.rescaled:
        arbiter.update_target(arbiter.pools[name])
    arbiter.programs = dict(new)
    arbiter.pools = addressing.by_priority(arbiter.pools)  # a priority may have changed
    parts = [f"{label}: {', '.join(names)}" for label, names in (
        ("added", plan.added), ("removed", plan.removed), ("rescaled", plan.rescaled),
        ("replaced", plan.replaced)) if names]
    summary = "; ".join(parts) or "no changes"
    log.info("config reloaded: %s", summary)
    if parts:
        arbiter.last_change = f"{summary} at {arbiter.clock.now():%H:%M:%S}"
    elif arbiter.last_change:  # the watcher may have applied an edit before this reload
        summary = f"no changes since the last reload ({arbiter.last_change})"
    return summary


def status(arbiter: Arbiter) -> dict[str, Any]:
    arbiter.reports.sync_all(arbiter.pools.values())  # jobs started since the loop's turn
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
            "target": pool.want,
            "target_reason": pool.target_reason if pool.mode == "running" else "stopped",
            "schedule_rule": decision.cron if decision else None,
            "next_transition": upcoming.isoformat() if upcoming else None,
            "state": pool.state(),
            "paused": pool.paused,
            "queues": list(program.queues) if isinstance(program, WorkerProgram) else [],
            "processes": [_process(arbiter, pool, c, now) for c in pool.children
                          if c.state is not State.EXITED or pool.run_of(c).done],
            "preload": arbiter.spawner.status(pool),  # zygote pids, import error
            **periodic.status_fields(pool),  # state, entries: a periodic program's
        })
    return {
        "programs": programs,
        "master": {
            "pid": os.getpid(),
            "fleet_id": arbiter.fleet.id,
            "uptime": round(now - arbiter.started, 3),
            "config_dir": str(arbiter.config_dir),
            "stopping": arbiter.stopping,
            "restart_signal": arbiter.restart_generation,
            "restart_seen_ago": (None if arbiter.restart_seen_at is None
                                 else round(now - arbiter.restart_seen_at, 3)),
            "redis": arbiter.redis.as_dict(),
            "alerts": arbiter.alerting.book.texts,
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
             and child.state in ALIVE_STATES
             and (child.generation is None or child.generation < current))
    return {
        "pid": child.pid if child.pid and child.pid > 0 else None,
        "slot": child.slot,
        "name": child.name,
        "state": child.state.value,
        "uptime": round(child.uptime(now), 3),
        "jobs_done": child.jobs_done,
        "job": job,
        "queues": list(child.queues) if child.queues else None,  # balance: its one queue
        "rss": rss,
        "pre_restart_code": stale,
    }
