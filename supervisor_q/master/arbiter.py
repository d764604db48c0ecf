"""The master loop: wait -> dispatch -> reap -> deadlines -> restart signal -> tick pools.

Single-threaded: signals, control requests and child reports all arrive as events on one
selector (wakeup.py); config-dir changes are noticed by the slow tick (confwatch.py), so
no other thread exists when the master forks. A failed iteration is logged and the loop
goes on. The master never runs jobs and never imports job modules.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import redis

from supervisor_q.clock import Clock
from supervisor_q.config.loading import (
    ConfigError,
    ProgramConfig,
    WorkerProgram,
    config_fingerprint,
    load_config_dir,
)
from supervisor_q.config.settings import MasterSettings
from supervisor_q.ctl.protocol import ControlError, ControlServer
from supervisor_q.fleet.member import FleetMember
from supervisor_q.jobs import dispatching
from supervisor_q.master import addressing, commands, periodic, upkeep
from supervisor_q.master.alerting import Alerting
from supervisor_q.master.confwatch import DirSnapshot
from supervisor_q.master.guardian import Guardian
from supervisor_q.master.handbacks import Handbacks
from supervisor_q.master.metering import Metering
from supervisor_q.master.phases import stop_all_now, stop_in_phases
from supervisor_q.master.pool import Pool
from supervisor_q.master.reports import ReportReader
from supervisor_q.master.systemd import Notifier
from supervisor_q.master.wakeup import FdReady, SignalReceived, Wakeup
from supervisor_q.master.zygote import PreloadSpawner
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.faults import Gate
from supervisor_q.queue.restart import read_generation

log = logging.getLogger("supervisor_q.arbiter")

TICK = 1.0  # the loop wakes at least this often
REDIS_TIMEOUT = 1.0  # seconds, per call of the master's own (a hung Redis: queue/faults.Gate)
RELOAD_DEBOUNCE = 0.3  # editors write a file in several steps


class Arbiter:
    def __init__(self, config_dir: Path, programs: dict[str, ProgramConfig], redis_url: str,
                 control_path: Path, clock: Clock | None = None,
                 notifier: Notifier | None = None, settings: MasterSettings | None = None,
                 metrics_bind: str | None = None) -> None:
        self.config_dir = config_dir
        self.programs = programs
        self.redis_url = redis_url
        self.clock = clock or Clock()
        self.notifier = notifier or Notifier(None)
        self.wakeup = Wakeup()
        self.control = ControlServer(control_path, self.handle_command)
        self.guardian = Guardian()
        self.spawner = PreloadSpawner(redis_url, guardian=self.guardian, wakeup=self.wakeup)
        self.queue = RedisQueue(connect(redis_url, socket_timeout=REDIS_TIMEOUT,
                                        connect_timeout=REDIS_TIMEOUT, retries=False))
        dispatching.bind(self.queue)  # periodic firings: the same bounded client
        self.redis = Gate()  # probed on the slow tick (read_restart_signal); see its doc
        self.fleet = FleetMember(self.queue, gate=self.redis)  # heartbeat, dead masters
        self.handbacks = Handbacks(self.queue, self.redis)  # reaped children's jobs
        self.reports = ReportReader(self.wakeup, self.clock)
        self.metering = Metering(config_dir, redis_url, self.wakeup, self.reports,
                                 settings or MasterSettings(), metrics_bind)
        self.alerting = Alerting(self.queue, self.fleet.id, self.redis)
        self.periodic = periodic.Periodic(self.queue.client, None, self.fleet.id)
        self.pools: dict[str, Pool] = {}
        self.started = self.clock.monotonic()
        self.stopping: str | None = None  # "graceful" | "fast"
        self.reload_at: float | None = None
        # What the running config was read from; dir changes reload only when it differs.
        self.config_fingerprint = config_fingerprint(config_dir)
        self.config_watch: DirSnapshot | None = None  # taken in setup
        self.last_change = ""  # the last reload that changed something, and when
        self.restart_generation: float | None = None
        self.restart_seen_at: float | None = None
        self.next_slow_tick = 0.0
        self.next_watchdog = 0.0
        self.ready_sent = False
        self.supervised_server = None  # embedded RedisServer, restarted if it dies

    # -- setup -------------------------------------------------------------------

    def setup(self) -> None:
        self.guardian.start()  # first: before any other child, and before any thread
        if self.supervised_server is not None and self.supervised_server.alive():
            self.guardian.watch(self.supervised_server.process.pid)  # its own session
        try:
            sock = self.control.open()
        except ControlError:  # another master answers there: leave it be, stop ours
            self.guardian.close()
            raise
        self.wakeup.register(sock, ("accept", None))
        self.metering.open_server()
        for program in self.programs.values():
            self.add_pool(program)
        self.config_watch = DirSnapshot(self.config_dir)
        # An edit made between the first load and the snapshot: compared by content.
        self.reload_at = self.clock.monotonic() + RELOAD_DEBOUNCE

    def add_pool(self, program: ProgramConfig) -> None:
        mode = "running" if program.autostart else "stopped"  # autostart: false waits
        self.pools[program.name] = Pool(program, self.spawner, mode=mode)
        self.pools = addressing.by_priority(self.pools)  # ticks fork in priority order

    # -- the loop ----------------------------------------------------------------

    def run(self) -> int:
        self.setup()
        log.info("master pid=%d: %d program(s) from %s", os.getpid(), len(self.pools),
                 self.config_dir)
        while True:
            try:
                if self.iterate():
                    break
            except Exception:  # one bad iteration must not take the service down
                log.exception("master loop iteration failed; continuing")
        self.close()
        return 0

    def iterate(self) -> bool:
        """One turn of the loop; True when shutdown is complete."""
        self.redis.new_turn()
        for event in self.wakeup.wait(timeout=self.seconds_to_next_deadline()):
            self.dispatch(event)
        now = self.clock.monotonic()
        self.reap_children()
        for pool in self.pools.values():
            self.reports.catch_up(pool, now)  # a finish not read yet is not a timeout
            pool.enforce_deadlines(now)
        if now >= self.next_slow_tick:
            self.next_slow_tick = now + TICK
            self.slow_tick(now)
        elif self.periodic.next_at is not None and now >= self.periodic.next_at:
            self.periodic.tick(self)  # a periodic entry's moment, between slow ticks
        if self.reload_at is not None and now >= self.reload_at:
            self.reload_at = None
            self.reload_if_changed()
        for pool in self.pools.values():
            pool.tick(now)
            for child in pool.children:
                self.reports.register(pool, child, now)
        if self.stopping == "graceful":  # the next priority once the last one is down
            stop_in_phases(self.pools, now, fast=False)
        self.forget_removed_pools()
        self.notify_systemd(now)
        return self.stopping is not None and not any(p.alive() for p in self.pools.values())

    def seconds_to_next_deadline(self) -> float:
        now = self.clock.monotonic()
        moments = [self.next_slow_tick]
        moments += [d for p in self.pools.values() if (d := p.next_deadline()) is not None]
        moments += self.reports.rearm_moments(self.pools.values())
        if self.reload_at is not None:
            moments.append(self.reload_at)
        if self.periodic.next_at is not None:
            moments.append(self.periodic.next_at)
        return max(0.0, min(min(moments) - now, TICK))

    def dispatch(self, event: object) -> None:
        if isinstance(event, SignalReceived):
            handler = getattr(self, f"handle_{signal.Signals(event.signum).name[3:].lower()}",
                              None)
            if handler is not None:
                handler()
        elif isinstance(event, FdReady):
            kind, target = event.tag
            if kind == "accept":
                conn = self.control.accept()
                if conn is not None:
                    self.wakeup.register(conn, ("control", conn))
            elif kind == "control":
                self.wakeup.unregister(event.fileobj)
                wanted = self.control.ready(event.fileobj, event.mask)
                if wanted:
                    self.wakeup.register(event.fileobj, event.tag, wanted)
            elif kind == "child":
                self.reports.ready(*target)
            elif kind.startswith("metrics"):
                self.metering.fd_ready(kind, event.fileobj, event.mask, self.clock.monotonic())

    # -- signals -----------------------------------------------------------------

    def handle_term(self) -> None:
        self.shutdown("graceful")

    handle_int = handle_term

    def handle_quit(self) -> None:
        self.shutdown("fast")

    def handle_hup(self) -> None:
        self.reload_quietly()

    def handle_ttin(self) -> None:
        self.nudge_all(+1)

    def handle_ttou(self) -> None:
        self.nudge_all(-1)

    def handle_usr2(self) -> None:
        self.reports.output.reopen()  # log files opened again (logrotate)

    def handle_chld(self) -> None:
        pass  # reap_children runs every iteration

    def nudge_all(self, delta: int) -> None:
        """TTIN/TTOU: every pool one child more or fewer, as `scale` would set it."""
        for pool in self.pools.values():
            pool.scale_by(delta, self.clock.now())
        self.slow_tick(self.clock.monotonic())

    # -- children ----------------------------------------------------------------

    def reap_children(self) -> None:
        """waitpid(-1, WNOHANG) until none is left; no zombie survives an iteration."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.child_exited(pid, status)

    def child_exited(self, pid: int, status: int) -> None:
        now = self.clock.monotonic()
        for pool in self.pools.values():
            child = pool.find(pid)
            if child is None:
                continue
            self.reports.finish(pool, child)  # its last reports and output
            self.metering.reaped(pool, child, status, now)
            self.alerting.reaped(pool, child, status, now)
            back = pool.reaped(child, status, now)
            if child.pgid and child.pgid > 0:
                try:  # the job's own subprocesses must not outlive it
                    self.spawner.kill(child.pgid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.guardian.forget(child.pgid)
            if isinstance(pool.program, WorkerProgram):  # its job (all it held, if fenced)
                self.handbacks.reaped(child, pool.program, back, status)
            return
        # Otherwise it was the guardian (started again at once) or the embedded Redis
        # server: Popen.poll() then reports it gone and supervise_server starts it again.
        self.spawner.reaped(pid, status)  # a preload zygote: logged with how it ended
        if not self.guardian.exited(pid):
            self.guardian.forget(pid)

    # -- slow tick: targets, restart signal, memory, embedded server ------------------

    def slow_tick(self, now: float) -> None:
        self.read_restart_signal(now)  # first: the probe opens Redis for the rest
        self.handbacks.settle()
        for pool in self.pools.values():
            if self.stopping is None and pool.mode != "removing":
                self.update_target(pool)
        if self.config_watch is not None and self.config_watch.changed():
            self.reload_at = now + RELOAD_DEBOUNCE
        self.fleet.tick(now, self, lambda: commands.status(self))
        self.alerting.tick(now, self.pools.values(), self.metering.all_settings.alerts,
                           self.reports.counters, self.redis.down)
        upkeep.enforce_memory_hard(self.pools.values())
        upkeep.apply_inbox(self)
        self.periodic.tick(self)  # periodic programs' due entries (master/periodic.py)
        self.metering.tick(now, self.pools.values(), self.queue, self.redis)
        self.supervise_server()

    def update_target(self, pool: Pool) -> None:
        upkeep.update_target(self, pool)  # schedule, override, autoscale, balance

    def read_restart_signal(self, now: float) -> None:
        """Also the master's Redis health probe (self.redis, shown in status)."""
        if not self.redis.due():
            return
        try:
            value = read_generation(self.queue.client)
        except redis.RedisError as exc:  # unknown: read again, never taken as "no signal"
            self.redis.fault(exc, log, "master")
            return
        self.redis.report(None, log, "master")
        if value != self.restart_generation:
            if value is not None:
                log.info("restart signal %.6f seen: children restart after their job", value)
                self.restart_seen_at = now
            self.restart_generation = value
        commands.restart_commands_on_deploy(self, now)

    def supervise_server(self) -> None:
        server = self.supervised_server
        if server is None or self.stopping is not None or server.alive():
            return
        log.error("embedded Redis server exited; starting it again")
        if server.process is not None:
            self.guardian.forget(server.process.pid)
        try:  # waits 1 s at most: one still loading its data is found by the probe
            server.start(timeout=REDIS_TIMEOUT)
        except TimeoutError:
            log.warning("embedded Redis server not answering yet (loading its data?)")
        except Exception as exc:  # noqa: BLE001 - retried next tick
            log.error("embedded Redis server failed to start: %s", exc)
            return
        self.guardian.watch(server.process.pid)

    # -- reload, shutdown ----------------------------------------------------------

    def reload(self) -> str:
        """Validate the whole config dir, then apply only the difference.

        Raises ConfigError (after logging it) when the new config is invalid: then
        nothing that is running changes."""
        self.notifier.reloading()
        # Taken before reading: an edit racing with this read differs from it later.
        self.config_fingerprint = config_fingerprint(self.config_dir)
        try:
            new = load_config_dir(self.config_dir)
        except ConfigError as exc:
            log.error("config reload refused, still running the previous config:\n%s", exc)
            self.notifier.ready(self.status_line())
            raise
        summary = commands.apply_reload(self, new)
        self.notifier.ready(self.status_line())
        return summary

    def reload_if_changed(self) -> None:
        """A dir change: reload only when a program file's content differs from the
        last read, so one edit is one reload and a broken file is reported once."""
        if config_fingerprint(self.config_dir) != self.config_fingerprint:
            self.reload_quietly()

    def reload_quietly(self) -> None:
        """SIGHUP and file edits: an invalid config is logged by reload() and kept out."""
        try:
            self.reload()
        except ConfigError:
            pass

    def shutdown(self, mode: str) -> None:
        if self.stopping == "graceful" and mode == "graceful":  # a second TERM/INT
            log.info("graceful shutdown: signalled again, every program stops now")
            stop_all_now(self.pools, self.clock.monotonic())
            return
        if self.stopping == "fast" or self.stopping == mode:
            return
        self.stopping = mode
        log.info("%s shutdown: stopping %d children", mode,
                 sum(len(p.alive()) for p in self.pools.values()))
        self.notifier.stopping("stopping children")
        stop_in_phases(self.pools, self.clock.monotonic(), fast=mode == "fast")

    def forget_removed_pools(self) -> None:
        for name in [n for n, p in self.pools.items() if p.mode == "removing"]:
            if not self.pools[name].alive():
                del self.pools[name]
                self.reports.output.forget(name)  # its output rings
                log.info("%s: removed", name)

    def notify_systemd(self, now: float) -> None:
        if not self.ready_sent and self.stopping is None:
            self.ready_sent = True
            self.notifier.ready(self.status_line())
        interval = self.notifier.watchdog_interval
        if interval is not None and now >= self.next_watchdog:
            self.next_watchdog = now + interval
            self.notifier.watchdog_ping()
            self.notifier.status(self.status_line())

    def status_line(self) -> str:
        alive = sum(len(p.alive()) for p in self.pools.values())
        busy = sum(1 for p in self.pools.values() for c in p.children if c.job is not None)
        return f"{len(self.pools)} programs, {alive} children, {busy} busy"

    def handle_command(self, command: str, args: dict) -> object:
        return commands.handle(self, command, args)

    def close(self) -> None:
        self.guardian.close()  # orderly exit: nothing is left for it to kill
        self.control.close()
        self.metering.close()  # before the selector its server is registered on
        self.wakeup.close()
        self.fleet.leave()
        self.reports.output.close()
        self.alerting.close()
        self.queue.client.close()

