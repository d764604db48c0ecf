"""balance: simple / auto as pure arithmetic, with a fake clock (master/balance.py)."""

from __future__ import annotations

from dataclasses import dataclass

from supervisor_q.master.balance import (
    Balancer,
    choose,
    proportional,
    split_evenly,
    surplus,
)

QUEUES = ("high", "default", "low")


@dataclass
class FakeChild:
    queues: tuple[str, ...] | None
    job: object = None
    started_at: float = 0.0


def test_simple_splits_evenly_with_the_remainder_to_the_first_queues() -> None:
    assert split_evenly(QUEUES, 7) == {"high": 3, "default": 2, "low": 2}
    assert split_evenly(QUEUES, 2) == {"high": 1, "default": 1, "low": 0}
    balancer = Balancer()
    assert balancer.plan("simple", QUEUES, 6, None, 1, now=0.0) == {
        "high": 2, "default": 2, "low": 2}
    assert balancer.plan("simple", QUEUES, 4, None, 1, now=0.1) == {
        "high": 2, "default": 1, "low": 1}, "simple follows the size at once"


def test_auto_goal_keeps_the_floor_and_shares_the_rest_by_waiting_jobs() -> None:
    assert proportional(QUEUES, 10, {"high": 0, "default": 700, "low": 0}, 1) == {
        "high": 1, "default": 8, "low": 1}
    assert proportional(QUEUES, 10, {"high": 300, "default": 100, "low": 0}, 2) == {
        "high": 5, "default": 3, "low": 2}
    assert proportional(QUEUES, 6, {}, 1) == {"high": 2, "default": 2, "low": 2}
    assert proportional(QUEUES, 2, {"low": 50}, 1) == {"high": 1, "default": 1, "low": 0}, \
        "a pool smaller than the floors splits evenly"


def test_auto_moves_one_child_per_cooldown_and_a_steady_load_holds_steady() -> None:
    balancer = Balancer()
    steady = {"high": 0, "default": 900, "low": 0}
    plans = []
    now = 0.0
    for _ in range(120):  # a minute of slow ticks, every half second
        plans.append(balancer.plan("auto", QUEUES, 9, steady, 1, now, cooldown=3.0))
        now += 0.5
    assert plans[0] == {"high": 3, "default": 3, "low": 3}, "starts from the even split"
    changes = [n for n in range(1, len(plans)) if plans[n] != plans[n - 1]]
    assert all(b - a >= 6 for a, b in zip(changes, changes[1:], strict=False)), \
        "at most one change per cooldown (6 ticks)"
    for a, b in zip(plans, plans[1:], strict=False):
        assert sum(abs(a[q] - b[q]) for q in QUEUES) <= 2, "one child moved at a time"
    assert plans[-1] == {"high": 1, "default": 7, "low": 1}
    assert len(changes) == 4 and all(p == plans[-1] for p in plans[changes[-1]:]), \
        "converged, then held steady"


def test_auto_follows_the_pool_size_at_once_and_returns_when_the_load_ends() -> None:
    balancer = Balancer()
    balancer.plan("auto", QUEUES, 3, {"low": 100}, 1, 0.0, cooldown=1.0)
    grown = balancer.plan("auto", QUEUES, 6, {"low": 100}, 1, 0.1, cooldown=1.0)
    assert grown == {"high": 1, "default": 1, "low": 4}, "new children go where work waits"
    now = 0.1
    for _ in range(10):
        now += 1.0
        plan = balancer.plan("auto", QUEUES, 6, {}, 1, now, cooldown=1.0)
    assert plan == {"high": 2, "default": 2, "low": 2}, "no work: back to even"


def test_new_children_take_the_short_queue_and_only_surplus_is_recycled() -> None:
    plan = {"high": 1, "default": 2, "low": 0}
    kids = [FakeChild(("high",)), FakeChild(("high",), job=object(), started_at=1.0),
            FakeChild(("high",), started_at=2.0)]
    assert choose(plan, QUEUES, kids) == ("default",)
    assert choose({}, QUEUES, kids) is None, "balance: false - all queues"
    recycled = surplus(plan, QUEUES, kids)
    assert recycled == [kids[2], kids[0]], "idle ones first, newest first; never more than short"
    assert surplus(plan, QUEUES, [FakeChild(("high",)), FakeChild(("default",)),
                                  FakeChild(("default",))]) == []
    assert surplus(plan, QUEUES, [FakeChild(None)]) != [], "a child forked before balance"
