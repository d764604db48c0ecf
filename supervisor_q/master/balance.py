"""Queue balancing for a worker program serving several queues (Horizon's `balance`).

balance: false   every child takes all the program's queues, in priority order.
balance: simple  the children split evenly across the queues, each child serving one
                 queue (the first queues get the remainder).
balance: auto    each queue keeps min_per_queue children (when the pool has that many),
                 the rest go to the queues in proportion to their ready jobs (evenly when
                 none wait); the plan moves toward that by at most autoscale's max_shift
                 children per autoscale cooldown (1 per 10 s without autoscale:).

The plan (queue -> children) is pure arithmetic (`split_evenly`, `proportional`,
`shift_toward`, `Balancer.plan`), tested with a fake clock. `choose` picks a new child's
queue; `surplus` names the children serving a queue that has more than its share: the
pool recycles them gracefully (they finish their job) and their replacements take the
short queues. The pool size itself stays autoscale's, schedule's or numprocs'.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from supervisor_q.queue.payload import loggable

if TYPE_CHECKING:
    from supervisor_q.master.pool import Pool
    from supervisor_q.queue.backend import RedisQueue

log = logging.getLogger("supervisor_q.balance")

Plan = dict[str, int]  # queue -> children that serve it alone
DEFAULT_COOLDOWN = 10.0  # seconds between two shifts without autoscale: (its default)


def split_evenly(queues: Sequence[str], size: int) -> Plan:
    """size children over queues, the first queues taking the remainder."""
    if not queues:
        return {}
    base, extra = divmod(max(0, size), len(queues))
    return {q: base + (1 if n < extra else 0) for n, q in enumerate(queues)}


def proportional(queues: Sequence[str], size: int, waiting: Mapping[str, int],
                 min_per_queue: int) -> Plan:
    """auto's goal: min_per_queue each, the rest by ready jobs (largest remainder, ties
    to the higher priority); evenly when nothing waits or the pool is too small."""
    floor = min_per_queue * len(queues)
    total = sum(max(0, waiting.get(q, 0)) for q in queues)
    if size < floor or total == 0:
        return split_evenly(queues, size) if size < floor else {
            q: min_per_queue + n for q, n in split_evenly(queues, size - floor).items()}
    rest = size - floor
    shares = {q: rest * max(0, waiting.get(q, 0)) / total for q in queues}
    plan = {q: min_per_queue + int(shares[q]) for q in queues}
    left = size - sum(plan.values())
    by_remainder = sorted(queues, key=lambda q: (-(shares[q] - int(shares[q])),
                                                 queues.index(q)))
    for q in by_remainder[:left]:
        plan[q] += 1
    return plan


def resize(plan: Mapping[str, int], queues: Sequence[str], size: int,
           goal: Mapping[str, int]) -> Plan:
    """plan grown or shrunk to size (the pool's size changed): new children go to the
    queues furthest below goal, removed ones come from those furthest above it."""
    out = {q: plan.get(q, 0) for q in queues}
    while sum(out.values()) < size:
        q = max(queues, key=lambda q: (goal.get(q, 0) - out[q], -queues.index(q)))
        out[q] += 1
    while sum(out.values()) > size:
        q = max((q for q in queues if out[q] > 0),
                key=lambda q: (out[q] - goal.get(q, 0), queues.index(q)))
        out[q] -= 1
    return out


def shift_toward(plan: Mapping[str, int], goal: Mapping[str, int], max_shift: int) -> Plan:
    """At most max_shift children moved from queues above goal to queues below it."""
    out = dict(plan)
    for _ in range(max_shift):
        over = [q for q in out if out[q] > goal.get(q, 0)]
        under = [q for q in out if out[q] < goal.get(q, 0)]
        if not over or not under:
            break
        out[max(over, key=lambda q: out[q] - goal.get(q, 0))] -= 1
        out[max(under, key=lambda q: goal.get(q, 0) - out[q])] += 1
    return out


@dataclass
class Balancer:
    """A pool's plan and when it last shifted (monotonic seconds)."""

    current: Plan = field(default_factory=dict)
    last_shift_at: float | None = None

    def plan(self, mode: str, queues: Sequence[str], size: int,
             waiting: Mapping[str, int] | None, min_per_queue: int, now: float,
             cooldown: float = DEFAULT_COOLDOWN, max_shift: int = 1) -> Plan:
        """The plan now. simple: always the even split. auto: the goal from waiting
        (None: no sample, keep the plan), approached one shift per cooldown."""
        if mode == "simple" or not self.current:
            self.current = split_evenly(queues, size)
            return dict(self.current)
        goal = proportional(queues, size, waiting or {}, min_per_queue)
        if waiting is None:
            goal = dict(self.current) if sum(self.current.values()) == size else goal
        resized = resize(self.current, queues, size, goal)
        due = self.last_shift_at is None or now - self.last_shift_at >= cooldown
        shifted = shift_toward(resized, goal, max_shift) if due else resized
        if shifted != resized:
            self.last_shift_at = now
        self.current = shifted
        return dict(shifted)

    def pick(self, program: Any, children: Iterable[Any]) -> tuple[str, ...] | None:
        """A new child's queues (None: the program's, all of them)."""
        return choose(self.current, getattr(program, "queues", ()), children)


def served(children: Iterable[Any]) -> Plan:
    """How many children serve each queue alone now (child.queues of one queue)."""
    counts: Plan = {}
    for child in children:
        if child.queues and len(child.queues) == 1:
            counts[child.queues[0]] = counts.get(child.queues[0], 0) + 1
    return counts


def choose(plan: Mapping[str, int], queues: Sequence[str], children: Iterable[Any]
           ) -> tuple[str, ...] | None:
    """The queues a new child takes: the one furthest below its share (None: no plan,
    so all of them in priority order)."""
    if not plan:
        return None
    have = served(children)
    return (max(queues, key=lambda q: (plan.get(q, 0) - have.get(q, 0), -queues.index(q))),)


def surplus(plan: Mapping[str, int], queues: Sequence[str], children: Sequence[Any]
            ) -> list[Any]:
    """Children to recycle: those on a queue above its share while another queue is
    below its own (idle ones first, then the newest). Children of a plan-less pool
    (balance: false) are never recycled here."""
    if not plan:
        return []
    have = served(children)
    short = sum(max(0, plan.get(q, 0) - have.get(q, 0)) for q in queues)
    out: list[Any] = []
    for q in queues:
        extra = have.get(q, 0) - plan.get(q, 0)
        mine = sorted((c for c in children if c.queues == (q,)),
                      key=lambda c: (c.job is not None, -(c.started_at or 0)))
        out += mine[:max(0, extra)]
    stray = [c for c in children if not c.queues or len(c.queues) != 1
             or c.queues[0] not in plan]  # forked before `balance:` was set
    return stray + out[:short]


# -- applied on the master's slow tick (arbiter.update_target) ----------------------

def rebalance(pool: Pool, queue: RedisQueue | None, now: float,
              on_fault: Callable[[redis.RedisError], object] | None = None) -> None:
    """Update pool's plan (auto: from the ready jobs of its queues; queue None when Redis
    is away: the plan holds) and recycle the children a queue has too many of; a Redis
    error reading the queues goes to on_fault (the master's gate)."""
    program = pool.program
    mode = getattr(program, "balance", False)
    if pool.mode != "running":
        return
    if not mode:  # off (or switched off by a reload): one-queue children take them all
        pool.scaling.balancer.current = {}
        stale = [c for c in pool.active() if c.queues]
        _recycle(pool, stale, now, "balance: false")
        return
    waiting = _waiting(queue, program.queues, on_fault) if mode == "auto" else None
    auto = program.autoscale
    plan = pool.scaling.balancer.plan(
        mode, program.queues, pool.want, waiting, program.min_per_queue, now,
        auto.cooldown if auto else DEFAULT_COOLDOWN, auto.max_shift if auto else 1)
    _recycle(pool, surplus(plan, program.queues, pool.active()), now,
             "rebalance " + " ".join(f"{q}={n}" for q, n in plan.items()))


def _waiting(queue: RedisQueue | None, queues: Sequence[str],
             on_fault: Callable[[redis.RedisError], object] | None) -> dict[str, int] | None:
    if queue is None:
        return None
    try:
        return {q: queue.load(q)[0] for q in queues}
    except redis.RedisError as exc:
        if on_fault is not None:
            on_fault(exc)
        return None


def _recycle(pool: Pool, children: list[Any], now: float, reason: str) -> None:
    for child in children:
        log.info("%s: recycling %s (serves %s): %s", pool.name, child.name,
                 ",".join(loggable(q) for q in child.queues or ("all",)), reason)
        pool.stop_child(child, now, reason)
