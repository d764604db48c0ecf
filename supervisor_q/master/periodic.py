"""Periodic programs (`periodic:`): the master queues each entry's job when it is due.

No process is forked and no job code imported: a due entry is dispatched by name, with
the options its workers published to Redis (jobs/registry.py: declared_job), as
`supervisor-q dispatch NAME` does. A job no worker has published yet is queued on the
entry's `queue` with the program defaults (one warning); without a `queue:` that firing
is skipped (a warning each time): no worker would serve it on `default`.

Exactly once across masters: every master sharing Redis evaluates every entry on its
slow tick, against the Redis server's clock (TIME), so skewed host clocks do not matter;
the due times come from master/due.py. Before it acts on a due time, a master claims
it with one script on the program's state hash (queue/keys.py: periodic_key): the
entry's last handled due time moves forward only, so one master wins each due time and
an older one is never acted on after a newer one. The claim comes first: a master that
dies between claim and dispatch loses that one firing (at most once per due time).

A periodic pool has no children: `stop`/`start` and `pause`/`continue` stop and
resume firing (its mode and `paused` flag); due times passed meanwhile are missed, and
`catch_up: true` fires one of them when firing resumes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import redis

from supervisor_q.config.periodic import PeriodicEntry, PeriodicProgram
from supervisor_q.ctl.protocol import ControlError
from supervisor_q.jobs import dispatching
from supervisor_q.jobs.registry import declared_job
from supervisor_q.master.due import Due, decide, iso, latest, upcoming
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.jobinfo import job_status
from supervisor_q.queue.keys import periodic_key
from supervisor_q.queue.payload import loggable

if TYPE_CHECKING:
    from supervisor_q.master.arbiter import Arbiter
    from supervisor_q.master.pool import Pool

log = logging.getLogger("supervisor_q.periodic")

# KEYS[1] the program's state hash; ARGV entry name, due time. 1: this caller won it.
CLAIM = """
local field = ARGV[1] .. ':due'
local last = tonumber(redis.call('HGET', KEYS[1], field))
if last and last >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], field, ARGV[2])
return 1
"""
IN_PROGRESS = frozenset({"queued", "delayed", "running", "released"})
MAX_OUTCOME = 300  # characters of an error kept as an entry's last outcome


class NotRegistered(LookupError):
    """An entry without `queue:` whose job no worker has published: not fired."""


def server_time(client: redis.Redis) -> float:
    """The Redis server's clock, epoch seconds: the one clock every master shares."""
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


def firing(pools: Iterable[Pool]) -> list[PeriodicProgram]:
    """Periodic programs that fire now: running (not stopped or removed), not paused."""
    return [p.program for p in pools if isinstance(p.program, PeriodicProgram)
            and p.mode == "running" and not p.paused]


def status_fields(pool: Pool) -> dict[str, Any]:
    """What `status` shows of a periodic program beyond the common keys (none else)."""
    if not isinstance(pool.program, PeriodicProgram):
        return {}
    count = len(pool.program.periodic)
    return {"state": "running" if pool.mode == "running" else "stopped", "entries": count,
            "target_reason": f"periodic: {count} entr{'y' if count == 1 else 'ies'}"}


class Periodic:
    """The master's firing of every periodic program, on its slow tick."""

    def __init__(self, client: redis.Redis, redis_url: str | None, master_id: str) -> None:
        self.client = client
        # Dispatches go through jobs.dispatching, as every dispatch; None: the queue the
        # process bound (the master's own, with its short timeout).
        self.url = redis_url
        self.master_id = master_id
        self.claim = client.register_script(CLAIM)
        self.warned: set[tuple[str, str]] = set()  # (program, job) told once: undeclared
        # monotonic moment of the next firing, so the arbiter wakes for it rather than
        # firing on its next one-second slow tick (up to a second late)
        self.next_at: float | None = None

    def tick(self, arbiter: Arbiter) -> None:
        """Fire every due entry of the firing programs (the arbiter's slow tick, and the
        moment in next_at)."""
        self.next_at = None
        if arbiter.stopping is not None or not arbiter.redis.open:
            return
        programs = firing(arbiter.pools.values())
        if not programs:
            return
        try:
            now = server_time(self.client)
            for program in programs:
                self.fire_due(program, now)
            self.next_at = self.next_moment(programs, now, arbiter.clock.monotonic())
        except redis.RedisError as exc:
            arbiter.redis.fault(exc, log, "periodic")

    @staticmethod
    def next_moment(programs: list[PeriodicProgram], now: float,
                    monotonic: float) -> float | None:
        """The monotonic time of the soonest firing moment of these programs' entries."""
        moments = [due.moment for program in programs for entry in program.periodic
                   if (due := upcoming(program.name, entry, entry.timezone or program.timezone,
                                       now)) is not None]
        return monotonic + max(0.0, min(moments) - now) if moments else None

    def fire_due(self, program: PeriodicProgram, now: float) -> None:
        key = periodic_key(program.name)
        state = {_text(k): _text(v) for k, v in self.client.hgetall(key).items()}
        for entry in program.periodic:
            due = latest(program.name, entry, entry.timezone or program.timezone, now)
            action = decide(due, _number(state.get(f"{entry.name}:due")), now,
                            entry.catch_up)
            if action == "wait" or due is None:
                continue
            if not self.claim(keys=[key], args=[entry.name, repr(due.at)]):
                continue  # another master has it
            if action != "start":  # start: a new entry waits for its next due time
                self.act(program, entry, action, due, now, state)

    def act(self, program: PeriodicProgram, entry: PeriodicEntry, action: str, due: Due,
            now: float, state: dict[str, str]) -> None:
        """A claimed due time: skip it (missed, or the last run still going) or fire it."""
        last = _json(state.get(f"{entry.name}:last"))
        if action == "skip_missed":
            log.info("%s:%s: due time %s missed while no master fired it; skipped "
                     "(catch_up: false)", program.name, entry.name, iso(due.at))
            self.record(program, entry, {**last, "outcome": "skipped (missed)", "due": due.at})
        elif not entry.overlap and self.still_running(last):
            log.info("%s:%s: due time %s skipped: the previous run %s is still %s",
                     program.name, entry.name, iso(due.at), loggable(last["job_id"]),
                     last.pop("_state", None))
            self.record(program, entry, {**last, "outcome": "skipped (overlap)", "due": due.at})
        else:
            last.pop("_state", None)
            self.fire(program, entry, due, now, "catch-up" if action == "catch_up" else "due")

    def still_running(self, last: dict[str, Any]) -> bool:
        """The last fired job is still queued, delayed, released or running."""
        job_id = last.get("job_id")
        if not isinstance(job_id, str):
            return False
        found = job_status(self.client, job_id, last.get("queue"))
        last["_state"] = found.state if found is not None else None
        return found is not None and found.state in IN_PROGRESS

    def fire(self, program: PeriodicProgram, entry: PeriodicEntry, due: Due | None,
             now: float, why: str) -> dict[str, Any]:
        """Dispatch the entry's job now; record and log what happened."""
        queue = None
        try:
            job_id, queue = self.dispatch(program, entry)
            outcome = "dispatched" if job_id else "dropped (a unique job is already queued)"
        except NotRegistered as exc:
            job_id, outcome = None, str(exc)[:MAX_OUTCOME]
        except (ValueError, TypeError, LookupError, RuntimeError) as exc:
            job_id, outcome = None, f"error: {exc}"[:MAX_OUTCOME]
        record = {"due": due.at if due else None, "fired_at": now, "job_id": job_id,
                  "queue": queue, "outcome": outcome, "why": why, "master": self.master_id}
        self.record(program, entry, record)
        level = (logging.ERROR if outcome.startswith("error") else
                 logging.WARNING if outcome.startswith("skipped") else logging.INFO)
        log.log(level, "%s:%s: %s: job %s %s (%s) -> %s", program.name, entry.name, why,
                loggable(entry.job), loggable(job_id), f"due {iso(due.at)}" if due else "now",
                loggable(outcome, 400))
        return record

    def dispatch(self, program: PeriodicProgram, entry: PeriodicEntry) -> tuple[str | None, str]:
        """(job id, queue): by name with the job's declared options, else the defaults."""
        target = dispatching.queue(self.url)
        found = declared_job(entry.job, target)
        if found is not None:
            queue = entry.queue or found.options.queue
            return found.dispatch(*entry.args, queue=queue, connection=self.url,
                                  **entry.kwargs), queue
        if entry.queue is None:  # its queue is unknown: never pile jobs up on `default`
            raise NotRegistered(f"skipped: no worker has registered job {entry.job} yet (give "
                                f"the entry a queue: to dispatch it anyway)")
        if (program.name, entry.job) not in self.warned:
            self.warned.add((program.name, entry.job))
            log.warning("%s:%s: no worker has registered job %s yet: queued on %r without "
                        "its declared options", program.name, entry.name,
                        loggable(entry.job), entry.queue)
        built = payloads.build(entry.job, entry.queue, entry.args, entry.kwargs)
        return dispatching.send(built, connection=self.url), built.queue

    def record(self, program: PeriodicProgram, entry: PeriodicEntry,
               record: dict[str, Any]) -> None:
        self.client.hset(periodic_key(program.name), f"{entry.name}:last",
                         json.dumps(record, separators=(",", ":")))

    def state(self, program: PeriodicProgram) -> dict[str, str]:
        raw = self.client.hgetall(periodic_key(program.name))
        return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # not written by a master: as if never handled


def _json(value: str | None) -> dict[str, Any]:
    try:
        body = json.loads(value) if value is not None else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# -- the `periodic` control command: list, run ------------------------------------

def command(arbiter: Arbiter, args: dict[str, Any]) -> Any:
    """`periodic list` (every entry) or `periodic run NAME` (fire one now)."""
    if not arbiter.redis.open:  # at once, rather than a timeout per command
        raise ControlError(f"Redis unavailable since {iso(arbiter.redis.since)}: "
                           f"{arbiter.redis.error}")
    try:
        if args.get("action") == "list":
            return listing(arbiter)
        if args.get("action") == "run":
            pool, entry = find_entry(arbiter, args.get("name"))
            assert isinstance(pool.program, PeriodicProgram)
            now = server_time(arbiter.periodic.client)
            return arbiter.periodic.fire(pool.program, entry, None, now, "run by hand")
    except redis.RedisError as exc:
        arbiter.redis.fault(exc, log, "periodic")
        raise ControlError(f"Redis unavailable: {str(exc)[:200]}") from None
    raise ControlError("periodic: the action must be list or run")


def _periodic_pools(arbiter: Arbiter) -> list[Pool]:
    return [p for p in arbiter.pools.values()
            if isinstance(p.program, PeriodicProgram) and p.mode != "removing"]


def find_entry(arbiter: Arbiter, name: object) -> tuple[Pool, PeriodicEntry]:
    """`PROGRAM:ENTRY`, or `ENTRY` when one periodic program has an entry of that name."""
    text = name if isinstance(name, str) else ""
    program_name, _, entry_name = text.rpartition(":")
    found = [(pool, entry) for pool in _periodic_pools(arbiter)
             for entry in pool.program.periodic  # type: ignore[union-attr]
             if entry.name == entry_name and program_name in ("", pool.name)]
    if len(found) == 1:
        return found[0]
    known = ", ".join(f"{pool.name}:{entry.name}" for pool in _periodic_pools(arbiter)
                      for entry in pool.program.periodic)  # type: ignore[union-attr]
    why = "is ambiguous, give PROGRAM:ENTRY" if found else "matches no periodic entry"
    raise ControlError(f"{text[:100]!r} {why} (entries: {known[:500] or 'none'})")


def listing(arbiter: Arbiter) -> list[dict[str, Any]]:
    """Every entry: schedule, next due time, last firing, its job and the job's state."""
    periodic = arbiter.periodic
    now = server_time(periodic.client)
    out = []
    for pool in _periodic_pools(arbiter):
        program = pool.program
        assert isinstance(program, PeriodicProgram)
        state = periodic.state(program)
        for entry in program.periodic:
            zone = entry.timezone or program.timezone
            following = upcoming(program.name, entry, zone, now)
            last = _json(state.get(f"{entry.name}:last"))
            job_id, queue = last.get("job_id"), last.get("queue")
            found = job_status(periodic.client, job_id, queue) if isinstance(job_id, str) else None
            out.append({
                "program": program.name, "entry": entry.name, "job": entry.job,
                "schedule": entry.schedule_text, "timezone": zone,
                "firing": pool.mode == "running" and not pool.paused,
                "next_due": iso(following.moment) if following else None,
                "last_due": iso(_number(state.get(f"{entry.name}:due"))),
                "last_fired": iso(last.get("fired_at")), "last_job_id": job_id,
                "last_outcome": last.get("outcome"),
                "last_job_state": found.state if found is not None else None,
            })
    return out
