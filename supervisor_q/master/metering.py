"""The master's metrics, wired in: counts from the report reader and the reaper, the
slow-tick chores (process states, time in BACKOFF/FATAL, queue gauges, the flush of the
per-minute buckets every FLUSH_EVERY seconds, a changed `supervisor-q.yaml`) and the
/metrics server on the arbiter's selector. The counting itself is observe/.

A Redis outage while flushing keeps the deltas (bounded: counters.MAX_PENDING_FIELDS)
and waits longer before the next try; the flush has its own client with a short socket
timeout, so the master loop never waits on it for long.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter as Tally
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from supervisor_q.config.loading import CommandProgram, ConfigError, WorkerProgram
from supervisor_q.config.settings import (
    MasterSettings,
    MetricsSettings,
    load_master_settings,
    parse_bind,
    settings_path,
)
from supervisor_q.master.process import WAITING_STATES, ChildProcess, State
from supervisor_q.master.reports import ReportReader
from supervisor_q.master.wakeup import Wakeup
from supervisor_q.observe import buckets, queues
from supervisor_q.observe.counters import Counters, restart_reason
from supervisor_q.observe.exporter import GaugeCollector, MetricsServer
from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.faults import Gate

if TYPE_CHECKING:
    from supervisor_q.master.pool import Pool

log = logging.getLogger("supervisor_q.metrics")

FLUSH_EVERY = 5.0  # seconds between two flushes of the buckets (and queue measurements)
MAX_BACKOFF = 60.0  # after failed flushes, wait up to this long before the next


class Metering:
    def __init__(self, config_dir: Path, redis_url: str, wakeup: Wakeup, reports: ReportReader,
                 settings: MasterSettings, bind_override: str | None = None) -> None:
        self.config_dir = config_dir
        self.reports = reports  # counts the reports into reports.counters while enabled
        self.redis_url = redis_url
        self.wakeup = wakeup
        self.bind_override = bind_override  # `run --metrics HOST:PORT` wins over the file
        self.all_settings = settings  # the whole file; alerting.py reads its `alerts:`
        self.settings = settings.metrics
        self.settings_stamp = self._stamp()
        self.counters = Counters()
        self.queue_gauges: dict[str, queues.QueueGauges] = {}
        self.counters.registry.register(GaugeCollector(self.counters, lambda: self.queue_gauges))
        self.server: MetricsServer | None = None
        self.client: RedisQueue | None = None
        self.next_flush = 0.0
        self.backoff = FLUSH_EVERY
        self.last_tick: float | None = None
        self.reports.counters = self.counters if self.enabled else None

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def bind(self) -> str | None:
        return self.bind_override or self.settings.bind

    # -- the /metrics server -------------------------------------------------------

    def open_server(self) -> None:
        """Serve /metrics at the configured address (none: no server); a bind that fails
        is logged and metrics go on being counted and flushed."""
        self.close_server()
        if self.bind is None or not self.enabled:
            return
        host, port = parse_bind(self.bind)
        server = MetricsServer(host, port, self.counters.registry)
        try:
            sock = server.open()
        except OSError as exc:
            log.error("metrics: cannot serve /metrics on %s: %s", self.bind, exc)
            return
        self.server = server
        self.wakeup.register(sock, ("metrics-accept", None))
        log.info("metrics: serving /metrics on http://%s:%d", *server.address)

    def close_server(self) -> None:
        if self.server is not None:
            for state in list(self.server.conns.values()):
                self._drop(state.sock)
            if self.server.sock is not None:
                try:  # at exit the arbiter's selector may be closed already
                    self.wakeup.unregister(self.server.sock)
                except (KeyError, ValueError):
                    pass
            self.server.close()
            self.server = None

    def _drop(self, conn: object) -> None:
        try:
            self.wakeup.unregister(conn)
        except (KeyError, ValueError):
            pass
        if self.server is not None:
            self.server.close_connection(conn)  # type: ignore[arg-type]

    def fd_ready(self, kind: str, fileobj: object, mask: int, now: float) -> None:
        """The arbiter's dispatch for the tags registered here."""
        if self.server is None:
            return
        if kind == "metrics-accept":
            conn, dropped = self.server.accept(now)
            for old in dropped:
                self._drop(old)
            if conn is not None:
                self.wakeup.register(conn, ("metrics", None))
            return
        self.wakeup.unregister(fileobj)
        wanted = self.server.ready(fileobj, mask)  # type: ignore[arg-type]
        if wanted:
            self.wakeup.register(fileobj, ("metrics", None), wanted)

    # -- counting ----------------------------------------------------------------

    def reaped(self, pool: Pool, child: ChildProcess, status: int, now: float) -> None:
        """Before the pool decides on a reaped child: its job's outcome if it died
        mid-job, and the restart it leads to."""
        if not self.enabled:
            return
        run = pool.run_of(child)
        stopping = child.state is State.STOPPING
        job = child.job
        if job is not None and isinstance(pool.program, WorkerProgram) and job.id:
            outcome = run.kill_reason or ("stopped" if stopping else "lost")
            self.counters.finished(job.queue, job.name, outcome,
                                   max(0.0, now - job.started_at), int(time.time()) // 60)
        reason = restart_reason(status, run.kill_reason, stopping)
        if isinstance(pool.program, CommandProgram):  # its exit codes are its own
            expected = os.WIFEXITED(status) and os.WEXITSTATUS(status) in pool.program.exitcodes
            reason = None if stopping or expected else "crash"
        if reason is not None and pool.mode == "running":
            self.counters.restarted(pool.name, reason)

    # -- the slow tick -------------------------------------------------------------

    def tick(self, now: float, pools: Iterable[Pool], queue: RedisQueue,
             outage: Gate) -> None:
        """The slow tick's part; nothing touches Redis while the master's gate (outage)
        is closed: the counts wait for its probe. A fault here closes it."""
        self.reload_if_changed()
        if not self.enabled:
            return
        pools = list(pools)
        self.count_states(now, pools)
        if self.server is not None:
            for conn in self.server.stale(now):
                self._drop(conn)
        if now >= self.next_flush and outage.open:
            self.flush(now, outage)
            if self.server is not None and outage.open:
                self.measure_queues(pools, queue, outage)

    def count_states(self, now: float, pools: list[Pool]) -> None:
        elapsed = 0.0 if self.last_tick is None else now - self.last_tick
        self.last_tick = now
        states: Tally[tuple[str, str]] = Tally()
        for pool in pools:
            for child in pool.children:
                states[(pool.name, child.state.value)] += 1
                if child.state in WAITING_STATES and elapsed:
                    self.counters.in_state(pool.name, child.state.value, elapsed)
        self.counters.set_processes(states)

    def measure_queues(self, pools: list[Pool], queue: RedisQueue, outage: Gate) -> None:
        names = [q for p in pools if isinstance(p.program, WorkerProgram)
                 for q in p.program.queues]
        try:
            self.queue_gauges = queues.measure(queue, names)
        except redis.RedisError as exc:
            log.debug("metrics: queue gauges not measured: %s", exc)
            outage.fault(exc, log, "metrics")

    def flush(self, now: float, outage: Gate | None = None) -> None:
        pending = self.counters.take_pending()
        if not pending:
            self.next_flush = now + FLUSH_EVERY
            return
        try:
            if self.client is None:
                self.client = RedisQueue(connect(self.redis_url, socket_timeout=1.0,
                                                 connect_timeout=1.0, retries=False))
            buckets.flush(self.client.client, pending, self.settings.retention)
        except redis.RedisError as exc:
            if outage is not None:
                outage.fault(exc, log, "metrics")
            self.counters.give_back(pending)
            self.backoff = min(MAX_BACKOFF, self.backoff * 2)
            log.warning("metrics: flush to Redis failed (%s); kept, next try in %.0fs",
                        exc, self.backoff)
        else:
            self.backoff = FLUSH_EVERY
        self.next_flush = now + self.backoff

    # -- supervisor-q.yaml ---------------------------------------------------------

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(settings_path(self.config_dir))
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def reload_if_changed(self) -> None:
        """A changed settings file applies at once; an invalid one changes nothing."""
        stamp = self._stamp()
        if stamp == self.settings_stamp:
            return
        self.settings_stamp = stamp
        try:
            loaded = load_master_settings(self.config_dir)
        except ConfigError as exc:  # one log line per problem, as for program files
            for problem in exc.problems:
                log.error("settings refused, still running the previous ones: %s", problem)
            return
        self.all_settings = loaded
        new: MetricsSettings = loaded.metrics
        if new == self.settings:
            return
        old_bind, old_enabled = self.bind, self.enabled
        self.settings = new
        self.reports.counters = self.counters if self.enabled else None
        log.info("metrics: settings changed: %s", new.model_dump())
        if self.bind != old_bind or self.enabled != old_enabled:
            self.open_server()

    def close(self) -> None:
        """At the master's exit: the last deltas are flushed (best effort)."""
        self.close_server()
        if self.enabled:
            self.flush(0.0)
        if self.client is not None:
            self.client.client.close()
