"""The master loop: wait -> dispatch -> reap -> deadlines -> restart signal -> tick pools.

Single-threaded: signals, control requests, child reports and config-file events all
arrive as events on one selector (wakeup.py). A failed iteration is logged and the
loop goes on. The master never runs jobs and never imports job modules.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

from supervisor_q.clock import Clock
from supervisor_q.config.loading import (
    ConfigError,
    ProgramConfig,
    WorkerProgram,
    config_fingerprint,
    load_config_dir,
)
from supervisor_q.ctl.protocol import ControlServer
from supervisor_q.master.guardian import Guardian
from supervisor_q.master.pool import Pool
from supervisor_q.master.process import ChildProcess, State
from supervisor_q.master.schedule import AutoscaleInput, AutoscaleState, desired_numprocs
from supervisor_q.master.schedule import next_autoscale_state as advance_autoscale
from supervisor_q.master.spawn import ForkSpawner
from supervisor_q.master.systemd import Notifier
from supervisor_q.master.wakeup import FdReady, Poked, SignalReceived, Wakeup
from supervisor_q.queue import monitor
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.restart import read_generation
from supervisor_q.worker import handback
from supervisor_q.worker.report import parse_lines

log = logging.getLogger("supervisor_q.arbiter")

TICK = 1.0  # the loop wakes at least this often
RELOAD_DEBOUNCE = 0.3  # editors write a file in several steps
REPORT_BATCH = 0.05  # seconds a child's report pipe rests after being read
# File events that can change a program file. Never opened/closed-without-writing/
# accessed: reading the files (a reload, `cat`, check-config) must not cause a reload.
CHANGE_EVENTS = frozenset({"created", "deleted", "modified", "moved", "closed"})
GARBLED_LOGGED = 5  # unreadable report lines logged per child


@dataclass
class PoolState:
    """What the arbiter keeps per pool beside the pool itself."""

    override: tuple[int, object] | None = None  # (size, aware datetime set)
    autoscale: AutoscaleState = field(default_factory=AutoscaleState)
    removing: bool = False  # removed from the config: stop, then forget
    runtimes: list[float] = field(default_factory=list)  # recent job runtimes, for target_wait
    next_monitor: float = 0.0  # when to check the program's `monitor:` thresholds again


class Arbiter:
    def __init__(self, config_dir: Path, programs: dict[str, ProgramConfig], redis_url: str,
                 control_path: Path, clock: Clock | None = None,
                 notifier: Notifier | None = None) -> None:
        self.config_dir = config_dir
        self.programs = programs
        self.redis_url = redis_url
        self.clock = clock or Clock()
        self.notifier = notifier or Notifier(None)
        self.wakeup = Wakeup()
        self.control = ControlServer(control_path, self.handle_command)
        self.guardian = Guardian()
        self.spawner = ForkSpawner(redis_url, guardian=self.guardian)
        self.queue = RedisQueue(connect(redis_url, socket_timeout=5))
        self.pools: dict[str, Pool] = {}
        self.extra: dict[str, PoolState] = {}
        self.started = self.clock.monotonic()
        self.stopping: str | None = None  # "graceful" | "fast"
        self.reload_at: float | None = None
        # What the running config was read from; file events reload only when it differs.
        self.config_fingerprint = config_fingerprint(config_dir)
        self.restart_generation: float | None = None
        self.restart_seen_at: float | None = None
        self.next_slow_tick = 0.0
        self.next_watchdog = 0.0
        self.ready_sent = False
        self.observer = None
        self.supervised_server = None  # embedded RedisServer, restarted if it dies

    # -- setup -------------------------------------------------------------------

    def setup(self) -> None:
        self.guardian.start()  # first: before any other child, and before any thread
        if self.supervised_server is not None and self.supervised_server.alive():
            self.guardian.watch(self.supervised_server.process.pid)  # its own session
        sock = self.control.open()
        self.wakeup.register(sock, ("accept", None))
        for program in self.programs.values():
            self.add_pool(program)
        self.watch_config_dir()

    def add_pool(self, program: ProgramConfig) -> None:
        self.pools[program.name] = Pool(program, self.spawner)
        self.extra[program.name] = PoolState()

    def watch_config_dir(self) -> None:
        """Config edits wake the loop; the watcher thread only pokes the wake-up pipe."""
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            return
        wakeup = self.wakeup

        class Poke(FileSystemEventHandler):
            def on_any_event(self, event: object) -> None:
                if getattr(event, "event_type", None) in CHANGE_EVENTS:
                    wakeup.poke("config")

        self.observer = Observer()
        self.observer.schedule(Poke(), str(self.config_dir), recursive=False)
        self.observer.daemon = True
        self.observer.start()
        wakeup.poke("config")  # an edit made between the first load and the watch

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
        for event in self.wakeup.wait(timeout=self.seconds_to_next_deadline()):
            self.dispatch(event)
        now = self.clock.monotonic()
        self.reap_children()
        for pool in self.pools.values():
            pool.enforce_deadlines(now)
        if now >= self.next_slow_tick:
            self.next_slow_tick = now + TICK
            self.slow_tick(now)
        if self.reload_at is not None and now >= self.reload_at:
            self.reload_at = None
            self.reload_if_changed()
        for pool in self.pools.values():
            pool.tick(now)
            for child in pool.children:
                self.register_child_fd(pool, child, now)
        self.forget_removed_pools()
        self.notify_systemd(now)
        return self.stopping is not None and not any(p.alive() for p in self.pools.values())

    def seconds_to_next_deadline(self) -> float:
        now = self.clock.monotonic()
        moments = [self.next_slow_tick]
        moments += [d for p in self.pools.values() if (d := p.next_deadline()) is not None]
        moments += [run.rearm_at for p in self.pools.values() for run in p.runs.values()
                    if run.fd is not None and not run.registered and run.rearm_at]
        if self.reload_at is not None:
            moments.append(self.reload_at)
        return max(0.0, min(min(moments) - now, TICK))

    def dispatch(self, event: object) -> None:
        if isinstance(event, SignalReceived):
            handler = getattr(self, f"handle_{signal.Signals(event.signum).name[3:].lower()}",
                              None)
            if handler is not None:
                handler()
        elif isinstance(event, Poked) and event.reason == "config":
            self.reload_at = self.clock.monotonic() + RELOAD_DEBOUNCE
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
                self.child_reports_ready(*target)

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

    def handle_chld(self) -> None:
        pass  # reap_children runs every iteration

    def nudge_all(self, delta: int) -> None:
        for name, pool in self.pools.items():
            self.extra[name].override = (max(0, pool.target + delta), self.clock.now())
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
            run = pool.run_of(child)
            if run.fd is not None:
                self.read_child_reports(pool, child)  # the last words before the exit
                self.close_child_fd(pool, child)
            back = pool.reaped(child, status, now)
            if child.pgid and child.pgid > 0:
                try:  # the job's own subprocesses must not outlive it
                    self.spawner.kill(child.pgid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.guardian.forget(child.pgid)
            if back is not None and isinstance(pool.program, WorkerProgram):
                done = handback.settle(self.queue, pool.program, back)
                log.warning("%s: job %s (%s) interrupted (%s, %s): %s", child.name,
                            back.job.id, back.job.name, back.why, back.how, done)
            return
        # Otherwise it was the guardian (started again at once) or the embedded Redis
        # server: Popen.poll() then reports it gone and supervise_server starts it again.
        if not self.guardian.exited(pid):
            self.guardian.forget(pid)

    def close_child_fd(self, pool: Pool, child: ChildProcess) -> None:
        run = pool.run_of(child)
        if run.fd is not None:
            try:
                self.wakeup.unregister(run.fd)
            except (KeyError, ValueError):
                pass
            os.close(run.fd)
            run.fd = None

    def register_child_fd(self, pool: Pool, child: ChildProcess, now: float) -> None:
        """Watch a child's report pipe: a new child's at once, a busy one's again after
        its batching pause (reading first what arrived in the meantime)."""
        run = pool.run_of(child)
        if run.fd is None or run.registered or now < run.rearm_at:
            return
        if run.rearm_at:
            self.read_child_reports(pool, child)
            if run.fd is None:
                return
        self.wakeup.register(run.fd, ("child", (pool, child)))
        run.registered = True

    def child_reports_ready(self, pool: Pool, child: ChildProcess) -> None:
        """Read a child's reports, then stop watching its pipe for REPORT_BATCH seconds:
        a child running thousands of tiny jobs a second wakes the master a few dozen
        times, not thousands. Deadlines stay exact: reports carry their own times."""
        self.read_child_reports(pool, child)
        run = pool.run_of(child)
        if run.fd is not None and run.registered:
            self.wakeup.unregister(run.fd)
            run.registered = False
            run.rearm_at = self.clock.monotonic() + REPORT_BATCH

    def read_child_reports(self, pool: Pool, child: ChildProcess) -> None:
        run = pool.run_of(child)
        if run.fd is None:
            return
        while True:
            try:
                chunk = os.read(run.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:  # the child closed its end (it exited): stop watching
                self.close_child_fd(pool, child)
                break
            events, run.buffer = parse_lines(run.buffer + chunk)
            now = self.clock.monotonic()
            for ev in events:
                if ev.kind == "ready":
                    pool.child_ready(child, ev.generation)
                elif ev.kind == "started":
                    pool.job_started(child, ev.job_id, ev.name, ev.queue, ev.timeout,
                                     ev.attempts, min(ev.at, now))
                elif ev.kind == "finished":
                    if child.job is not None and child.job.id == ev.job_id:
                        self.record_runtime(pool, max(0.0, ev.at - child.job.started_at))
                    pool.job_finished(child, ev.job_id)
                else:
                    self.garbled_report(pool, child, ev.line, now)

    def garbled_report(self, pool: Pool, child: ChildProcess, line: bytes, now: float) -> None:
        """A report line that cannot be read (a bug, never a job's data: the framing
        carries any id). Say so loudly, a few times per child, and keep every deadline:
        an unreadable start still makes the child busy under the program's timeout."""
        run = pool.run_of(child)
        run.garbled += 1
        if run.garbled <= GARBLED_LOGGED:
            log.error("%s pid=%s: unreadable report %r%s", child.name, child.pid, line[:200],
                      " (further ones not logged)" if run.garbled == GARBLED_LOGGED else "")
        kind = line[:1]
        if kind == b"S" and isinstance(pool.program, WorkerProgram):
            pool.job_started(child, "", "(unreadable report)", "", pool.program.timeout,
                             0, now)
        elif kind == b"E" and child.job is not None:
            pool.job_finished(child, child.job.id)
        elif kind == b"R":
            pool.child_ready(child, None)

    def record_runtime(self, pool: Pool, seconds: float) -> None:
        runtimes = self.extra[pool.name].runtimes
        runtimes.append(seconds)
        del runtimes[:-50]

    # -- slow tick: targets, restart signal, memory, embedded server ------------------

    def slow_tick(self, now: float) -> None:
        for name, pool in self.pools.items():
            if self.stopping is None and not self.extra[name].removing:
                self.update_target(pool)
        self.read_restart_signal(now)
        self.check_monitors(now)
        self.enforce_memory_hard()
        self.supervise_server()

    def update_target(self, pool: Pool) -> None:
        extra = self.extra[pool.name]
        load = self.sample_load(pool) if pool.program.autoscale is not None else None
        target, reason = desired_numprocs(pool.program, self.clock.now(), extra.override,
                                          extra.autoscale, load)
        if load is not None and pool.program.autoscale is not None:
            extra.autoscale = advance_autoscale(extra.autoscale, pool.program.autoscale, load,
                                                target)
        if (target, reason) != (pool.target, pool.target_reason):
            if target != pool.target:
                log.info("%s: target %d -> %d (%s)", pool.name, pool.target, target, reason)
            pool.target, pool.target_reason = target, reason
        if extra.override is not None and reason != "manual scale":
            extra.override = None  # the schedule's next rule fired: the override is over

    def sample_load(self, pool: Pool) -> AutoscaleInput | None:
        program = pool.program
        assert isinstance(program, WorkerProgram)
        try:
            size, oldest = 0, 0.0
            for queue in program.queues:
                length, waited = self.queue.load(queue)
                size, oldest = size + length, max(oldest, waited)
        except redis.RedisError:
            return None
        runtimes = self.extra[pool.name].runtimes
        busy = sum(1 for c in pool.children if c.job is not None)
        return AutoscaleInput(current=len(pool.active()), busy=busy, queue_size=size,
                              oldest_wait=oldest,
                              avg_runtime=sum(runtimes) / len(runtimes) if runtimes else None,
                              now=self.clock.monotonic())

    def check_monitors(self, now: float) -> None:
        """Log an alert when a program's queue passes its `monitor:` size or wait."""
        for pool in self.pools.values():
            settings = getattr(pool.program, "monitor", None)
            extra = self.extra[pool.name]
            if settings is None or now < extra.next_monitor:
                continue
            extra.next_monitor = now + settings.every
            try:
                loads = monitor.measure(self.queue, list(pool.program.queues))
            except redis.RedisError:
                continue
            limits = monitor.Thresholds(settings.max_size, settings.max_wait)
            for alert in monitor.check_thresholds(loads, limits):
                log.warning("%s: ALERT %s", pool.name, alert)

    def read_restart_signal(self, now: float) -> None:
        try:
            value = read_generation(self.queue.client)
        except redis.RedisError:
            return
        if value != self.restart_generation:
            if value is not None:
                log.info("restart signal %.6f seen: children restart after their job", value)
                self.restart_seen_at = now
            self.restart_generation = value

    def enforce_memory_hard(self) -> None:
        for pool in self.pools.values():
            limit = getattr(pool.program, "memory_hard", None)
            if not limit:
                continue
            for child in pool.children:
                if child.job is None or not child.signallable:
                    continue
                try:
                    rss = psutil.Process(child.pid).memory_info().rss
                except psutil.Error:
                    continue
                if rss > limit * 1024 * 1024:
                    log.warning("%s pid=%s: RSS %d MB > memory_hard %d MB mid-job: SIGKILL",
                                child.name, child.pid, rss >> 20, limit)
                    pool.kill_for_memory(child)

    def supervise_server(self) -> None:
        server = self.supervised_server
        if server is None or self.stopping is not None or server.alive():
            return
        log.error("embedded Redis server exited; starting it again")
        if server.process is not None:
            self.guardian.forget(server.process.pid)
        try:
            server.start()
        except Exception as exc:  # noqa: BLE001 - retried next tick
            log.error("embedded Redis server failed to start: %s", exc)
            return
        self.guardian.watch(server.process.pid)

    # -- reload, shutdown ----------------------------------------------------------

    def reload(self) -> str:
        """Validate the whole config dir, then apply only the difference.

        Raises ConfigError (after logging it) when the new config is invalid: then
        nothing that is running changes."""
        from supervisor_q.master.commands import apply_reload

        self.notifier.reloading()
        # Taken before reading: an edit racing with this read differs from it later.
        self.config_fingerprint = config_fingerprint(self.config_dir)
        try:
            new = load_config_dir(self.config_dir)
        except ConfigError as exc:
            log.error("config reload refused, still running the previous config:\n%s", exc)
            self.notifier.ready(self.status_line())
            raise
        summary = apply_reload(self, new)
        self.notifier.ready(self.status_line())
        return summary

    def reload_if_changed(self) -> None:
        """A file event: reload only when a program file's content differs from the
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
        if self.stopping == "fast" or self.stopping == mode:
            return
        self.stopping = mode
        log.info("%s shutdown: stopping %d children", mode,
                 sum(len(p.alive()) for p in self.pools.values()))
        self.notifier.stopping("stopping children")
        now = self.clock.monotonic()
        for pool in self.pools.values():
            pool.target = 0
            pool.stopped = True
            for child in list(pool.children):
                if mode == "fast":
                    pool.stop_child(child, now, "fast shutdown", sig=signal.SIGKILL, wait=0)
                elif child.state is State.STOPPING:
                    continue
                else:
                    pool.stop_child(child, now, "shutdown")

    def forget_removed_pools(self) -> None:
        for name in [n for n, e in self.extra.items() if e.removing]:
            if not self.pools[name].alive():
                del self.pools[name]
                del self.extra[name]
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
        from supervisor_q.master.commands import handle

        return handle(self, command, args)

    def close(self) -> None:
        self.guardian.close()  # orderly exit: nothing is left for it to kill
        if self.observer is not None:
            self.observer.stop()
        self.control.close()
        self.wakeup.close()
        self.queue.client.close()

