"""Alerts, checked by every master on its slow tick: its own programs (a child FATAL, a
crash loop), the queues of its worker programs (size, oldest wait) and their failure and
timeout rates (from this master's counters). The conditions and the rate limit are
observe/alerts.py; delivery is hookproc.py (a process of its own, never the loop).

Thresholds: `alerts:` of supervisor-q.yaml for every program, overridden key by key by a
program's `alerts:`, whose `monitor:` {max_size, max_wait} is an alias. Queue size and
wait are the same for every master of a fleet: before notifying one, a master claims it
in Redis (SET NX PX for the period), so one master of the fleet notifies. Program
conditions and rates are this master's own: each master notifies its own.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import redis

from supervisor_q.config.loading import CommandProgram, ProgramConfig, WorkerProgram
from supervisor_q.config.schema import AlertRules
from supervisor_q.config.settings import AlertsSettings
from supervisor_q.master.hookproc import WebhookProcess
from supervisor_q.master.process import ChildProcess, State
from supervisor_q.observe.alerts import AlertBook, CrashLog, Notification, RateWindow, Reading
from supervisor_q.observe.counters import Counters, restart_reason
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.faults import Gate
from supervisor_q.queue.keys import PREFIX

if TYPE_CHECKING:
    from supervisor_q.master.pool import Pool

log = logging.getLogger("supervisor_q.alerts")

RULES = tuple(AlertRules.model_fields)


def claim_key(cid: str, event: str) -> str:
    return f"{PREFIX}:alerts:claim:{cid}:{event}"


def effective_rules(settings: AlertsSettings, program: ProgramConfig) -> dict[str, Any]:
    """The thresholds of one program: the file's, then `monitor:`, then its `alerts:`."""
    rules = {key: getattr(settings, key) for key in RULES}
    monitor = getattr(program, "monitor", None)
    if monitor is not None:
        rules.update({k: getattr(monitor, k) for k in ("max_size", "max_wait")
                      if getattr(monitor, k) is not None})
    if program.alerts is not None:
        rules.update({k: getattr(program.alerts, k) for k in program.alerts.model_fields_set})
    if rules["fatal"] is None:
        rules["fatal"] = True
    return rules


class Alerting:
    def __init__(self, queue: RedisQueue, fleet_id: str, gate: Gate | None = None) -> None:
        self.queue = queue
        self.gate = gate or Gate()  # the master's: no Redis work while it is closed
        self.fleet_id = fleet_id
        self.host = socket.gethostname()
        self.book = AlertBook()
        self.sender = WebhookProcess()
        self.crashes: dict[str, CrashLog] = defaultdict(CrashLog)
        self.rates: dict[tuple[str, str], RateWindow] = defaultdict(RateWindow)
        self.next_check = 0.0
        self.unmeasured: set[str] = set()

    def reaped(self, pool: Pool, child: ChildProcess, status: int, now: float) -> None:
        """A reaped child: a crash is remembered for the crash-loop condition."""
        stopping = child.state is State.STOPPING
        reason = restart_reason(status, pool.run_of(child).kill_reason, stopping)
        if isinstance(pool.program, CommandProgram):
            expected = os.WIFEXITED(status) and os.WEXITSTATUS(status) in pool.program.exitcodes
            reason = None if stopping or expected else "crash"
        if reason == "crash" and pool.mode == "running":
            self.crashes[pool.name].times.append(now)

    def tick(self, now: float, pools: Iterable[Pool], settings: AlertsSettings,
             counters: Counters | None, redis_down: bool) -> None:
        """Check when due; notify what is due."""
        pools = list(pools)
        every = min([settings.every] + [p.program.monitor.every for p in pools
                                        if getattr(p.program, "monitor", None)])
        if now < self.next_check:
            return
        self.next_check = now + every
        rules = {p.name: effective_rules(settings, p.program) for p in pools}
        readings = [r for p in pools for r in self.program_readings(p, rules[p.name], now)]
        readings += self.rate_readings(pools, rules, counters, now)
        self.unmeasured = set()  # queue conditions Redis could not measure now
        if not redis_down and self.gate.open:
            readings += self.queue_readings(pools, rules, settings)
        else:
            self.unmeasured = {cid for cid in self.book.last if cid.startswith("queue_")}
        seen = {r.cid for r in readings} | self.unmeasured
        due = self.book.update(readings, now, settings.period) + self.book.retire(seen)
        for notification in due:
            self.notify(notification, settings)

    def program_readings(self, pool: Pool, rules: dict[str, Any], now: float) -> list[Reading]:
        found = []
        where = f"{pool.name} on {self.host}"
        if rules["fatal"]:
            fatal = sum(1 for c in pool.children if c.state is State.FATAL)
            text = (f"program {where} is FATAL ({fatal} of {len(pool.children)} children)"
                    if fatal else f"program {where} has no FATAL child")
            found.append(Reading(f"fatal:{pool.name}:{self.fleet_id}", "fatal", pool.name,
                                 fatal > 0, text, fatal, 1))
        loop = rules["crash_loop"]
        if loop is not None:
            count = self.crashes[pool.name].within(now, loop.within)
            found.append(Reading(
                f"crash_loop:{pool.name}:{self.fleet_id}", "crash_loop", pool.name,
                count >= loop.restarts, f"program {where}: {count} crash restarts in the "
                f"last {loop.within:g}s (limit {loop.restarts})", count, loop.restarts))
        return found

    def rate_readings(self, pools: list[Pool], rules: dict[str, dict[str, Any]],
                      counters: Counters | None, now: float) -> list[Reading]:
        """Failed and timed-out jobs per queue in the last minute, on this master."""
        if counters is None:  # metrics disabled: nothing is counted
            return []
        # Every count's window is sampled, limit or not: a limit that arrives by reload
        # sees the last minute, not every job since the master started.
        counts = {pair: self.rates[pair].add(now, total)
                  for pair, total in counters.totals.items()}
        found = []
        for kind, outcome, key in (("failures", "failed", "failures_per_minute"),
                                   ("timeouts", "timeout", "timeouts_per_minute")):
            for queue, limit in _queue_limits(pools, rules, key).items():
                count = counts.get((queue, outcome), 0)
                found.append(Reading(
                    f"{kind}:{queue}:{self.fleet_id}", kind, queue, count > limit,
                    f"queue {queue}: {count} {outcome} jobs in the last minute on "
                    f"{self.host} (limit {limit})", count, limit))
        return found

    def queue_readings(self, pools: list[Pool], rules: dict[str, dict[str, Any]],
                       settings: AlertsSettings) -> list[Reading]:
        sizes = _queue_limits(pools, rules, "max_size")
        waits = _queue_limits(pools, rules, "max_wait")
        waits.update({q: w for q, w in settings.waits.items() if q in _queues(pools)})
        found = []
        for queue in sorted(set(sizes) | set(waits)):
            unmeasured = {f"queue_size:{queue}", f"queue_wait:{queue}"}
            if not self.gate.open:  # a fault below: the rest wait for the master's probe
                self.unmeasured |= unmeasured
                continue
            try:
                size, waited = self.queue.load(queue)
            except redis.RedisError as exc:
                self.gate.fault(exc, log, "alerts")
                self.unmeasured |= unmeasured
                continue
            if queue in sizes:
                limit = sizes[queue]
                found.append(Reading(f"queue_size:{queue}", "queue_size", queue, size > limit,
                                     f"queue {queue} has {size} jobs waiting (over {limit})"
                                     if size > limit else f"queue {queue} is back to {size} "
                                     f"jobs waiting (limit {limit})", size, limit, True))
            if queue in waits:
                limit = waits[queue]
                found.append(Reading(
                    f"queue_wait:{queue}", "queue_wait", queue, waited > limit,
                    f"queue {queue}: oldest job has waited {waited:.0f}s (over {limit:g}s)"
                    if waited > limit else f"queue {queue}: oldest wait back to "
                    f"{waited:.0f}s (limit {limit:g}s)", round(waited, 3), limit, True))
        return found

    def notify(self, notification: Notification, settings: AlertsSettings) -> None:
        """Log it and queue its webhooks; a fleet condition only if this master claims it."""
        reading = notification.reading
        if reading.fleet and not self.claim(reading.cid, notification.event, settings.period):
            return
        level = logging.INFO if notification.event == "cleared" else logging.WARNING
        log.log(level, "%s", notification.line)
        if settings.webhooks:
            self.sender.send(settings.webhooks,
                             notification.body(self.host, self.fleet_id))

    def claim(self, cid: str, event: str, period: float) -> bool:
        """One master of the fleet per condition, event and period; Redis away: notify.
        A claimed firing frees the cleared claim (its clear is notified at once); a clear
        keeps the firing claim, so a re-fire within the period stays suppressed fleet-wide
        as it does in each master's book."""
        kind = "cleared" if event == "cleared" else "firing"
        if not self.gate.open:
            return True
        try:
            won = self.queue.client.set(claim_key(cid, kind), self.fleet_id, nx=True,
                                        px=max(1, int(period * 1000)))
            if won and kind == "firing":
                self.queue.client.delete(claim_key(cid, "cleared"))
        except redis.RedisError as exc:
            self.gate.fault(exc, log, "alerts")
            return True
        return bool(won)

    def close(self) -> None:
        self.sender.close()


def _queues(pools: list[Pool]) -> set[str]:
    return {q for p in pools if isinstance(p.program, WorkerProgram) for q in p.program.queues}


def _queue_limits(pools: list[Pool], rules: dict[str, dict[str, Any]],
                  key: str) -> dict[str, Any]:
    """queue -> the lowest threshold `key` among the worker programs serving it."""
    limits: dict[str, Any] = {}
    for pool in pools:
        limit = rules[pool.name][key]
        if limit is None or not isinstance(pool.program, WorkerProgram):
            continue
        for queue in pool.program.queues:
            limits[queue] = limit if queue not in limits else min(limits[queue], limit)
    return limits
