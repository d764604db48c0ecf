"""A fake queue for the application's own tests: record dispatches, push nothing.

    from supervisor_q.testing import fake_queue

    def test_signup_sends_welcome():
        with fake_queue() as fake:
            signup("ada@example.com")
        fake.assert_dispatched(send_welcome, lambda user_id: user_id == 42)

Every dispatch goes through dispatching.send(), so Job.dispatch, dispatch(name),
chains, batches and jobs dispatched by code under test are all recorded. No Redis
is needed. Imports dispatching, jobs, payload and workflows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from supervisor_q.jobs import dispatching
from supervisor_q.jobs.registry import Job, Signature
from supervisor_q.queue.payload import Payload
from supervisor_q.workflows.batches import Batch, PendingBatch
from supervisor_q.workflows.chains import CHAIN

Target = Job | str | Signature


def _name(target: Target) -> str:
    return target.job if isinstance(target, Signature) else (
        target.name if isinstance(target, Job) else target)


@dataclass(frozen=True)
class Dispatched:
    """One recorded dispatch."""

    job: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    delay: float
    payload: Payload

    @property
    def chain(self) -> list[str]:
        """This job and the jobs chained after it, by name."""
        rest = self.payload.extra.get(CHAIN) or []
        return [self.job, *(str(s.get("job")) for s in rest)]


@dataclass(frozen=True)
class FakeBatch:
    """One recorded batch: its name, options, and jobs (chains as lists of signatures)."""

    id: str
    name: str
    jobs: list[list[Signature]]
    then: Signature | None
    catch: Signature | None
    finally_: Signature | None
    allow_failures: bool

    @property
    def job_names(self) -> list[str]:
        return [s.job for chain in self.jobs for s in chain]


class QueueFake:
    """Records dispatches and batches; assert_* methods raise AssertionError."""

    def __init__(self) -> None:
        self.dispatched: list[Dispatched] = []
        self.batches: list[FakeBatch] = []

    # -- recording (called by dispatching.send and PendingBatch.dispatch) --------

    def record(self, built: Payload, delay: float) -> None:
        self.dispatched.append(Dispatched(built.job, built.args, built.kwargs, built.queue,
                                          delay, built))

    def record_batch(self, pending: PendingBatch) -> Any:
        batch_id = str(uuid.uuid4())
        self.batches.append(FakeBatch(batch_id, pending.name,
                                      [list(c.jobs) for c in pending.items], pending.then,
                                      pending.catch, pending.finally_, pending.allow_failures))
        return Batch(batch_id)

    # -- queries -------------------------------------------------------------------

    def of(self, target: Target, predicate: Callable[..., bool] | None = None
           ) -> list[Dispatched]:
        """Dispatches of target whose (*args, **kwargs) satisfy predicate."""
        name = _name(target)
        return [d for d in self.dispatched if d.job == name
                and (predicate is None or predicate(*d.args, **d.kwargs))]

    # -- assertions ----------------------------------------------------------------

    def assert_dispatched(self, target: Target,
                          predicate: Callable[..., bool] | None = None) -> None:
        if not self.of(target, predicate):
            raise AssertionError(f"{_name(target)} was not dispatched"
                                 + (" with matching arguments" if predicate else "")
                                 + f"; dispatched: {self._names()}")

    def assert_not_dispatched(self, target: Target,
                              predicate: Callable[..., bool] | None = None) -> None:
        found = self.of(target, predicate)
        if found:
            raise AssertionError(f"{_name(target)} was dispatched {len(found)} time(s): "
                                 f"{[(d.args, d.kwargs) for d in found]}")

    def assert_dispatched_times(self, target: Target, times: int) -> None:
        count = len(self.of(target))
        if count != times:
            raise AssertionError(f"{_name(target)} dispatched {count} time(s), "
                                 f"expected {times}")

    def assert_nothing_dispatched(self) -> None:
        if self.dispatched:
            raise AssertionError(f"jobs were dispatched: {self._names()}")

    def assert_chained(self, targets: Sequence[Target]) -> None:
        """A chain of exactly these jobs, in this order, was dispatched. A Signature
        target also checks its arguments."""
        wanted = [_name(t) for t in targets]
        for d in self.dispatched:
            if d.chain == wanted and self._chain_args_match(d, targets):
                return
        raise AssertionError(f"no chain {wanted}; chains: {[d.chain for d in self.dispatched]}")

    @staticmethod
    def _chain_args_match(d: Dispatched, targets: Sequence[Target]) -> bool:
        got = [(d.args, d.kwargs)] + [(s.get("args") or [], s.get("kwargs") or {})
                                      for s in d.payload.extra.get(CHAIN) or []]
        return all(not isinstance(t, Signature) or (t.args, t.kwargs) == g
                   for t, g in zip(targets, got, strict=True))

    def assert_batched(self, predicate: Callable[[FakeBatch], bool] | None = None) -> None:
        if not any(predicate is None or predicate(b) for b in self.batches):
            raise AssertionError(f"no matching batch; batches: "
                                 f"{[(b.name, b.job_names) for b in self.batches]}")

    def assert_nothing_batched(self) -> None:
        if self.batches:
            raise AssertionError(f"{len(self.batches)} batch(es) dispatched: "
                                 f"{[b.name for b in self.batches]}")

    def _names(self) -> list[str]:
        return [d.job for d in self.dispatched]


@contextmanager
def fake_queue() -> Iterator[QueueFake]:
    """Record every dispatch inside the block instead of queueing it."""
    fake = QueueFake()
    previous = dispatching.set_fake(fake)
    try:
        yield fake
    finally:
        dispatching.set_fake(previous)
