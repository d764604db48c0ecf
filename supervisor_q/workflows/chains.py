"""Chains: jobs that run one after another.

The rest of a chain travels in the running job's payload (extra["chain"], a list of
signatures as JSON), so no chain state can be lost apart from its job. When a job
succeeds the worker dispatches the next one with the rest; when one fails for good
the rest are dropped and the optional catch job runs with the failure.
Callbacks are registered job names, never closures. Signature (a job name with
arguments) is the job API's, in jobs/registry.py. A step may also be a batch (see
batches.py, which registers its JSON reader in STEP_KINDS): the chain goes on when the
batch finishes. Imports registry, context, payload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from supervisor_q.jobs.context import current_job
from supervisor_q.jobs.registry import Job, Signature, signature
from supervisor_q.queue.payload import Payload

log = logging.getLogger("supervisor_q.workflows")

CHAIN = "chain"  # payload.extra: list of signature dicts still to run after this job
CATCH = "chain_catch"  # payload.extra: signature dict run when a chain job fails for good
BATCH = "batch"  # payload.extra: batch id (see batches.py)


class Step(Protocol):
    """A chain step that is not a job: a batch (batches.PendingBatch)."""

    queue: str | None

    def on(self, queue: str) -> Step: ...
    def to_json(self) -> dict[str, Any]: ...
    def dispatch(self, *, connection: str | None = None,
                 extra: dict | None = None) -> object: ...


# A step's JSON key -> its reader ({"batch": {...}} -> PendingBatch); filled by batches.py.
STEP_KINDS: dict[str, Callable[[dict[str, Any]], Step]] = {}


def _as_signature(item: Signature | Job | str) -> Signature:
    if isinstance(item, Signature):
        return item
    return signature(item)


def _as_step(item: Signature | Job | str | Step) -> Signature | Step:
    if isinstance(item, (Signature, Job, str)):
        return _as_signature(item)
    if hasattr(item, "to_json") and hasattr(item, "dispatch"):
        return item
    raise TypeError(f"a chain step is a job, a signature or a batch, not {item!r}")


def step_from_json(body: dict[str, Any]) -> Signature | Step:
    for kind, reader in STEP_KINDS.items():
        if kind in body:
            return reader(body[kind])
    return Signature.from_json(body)


@dataclass
class Chain:
    """Jobs that run in order; build with chain([...]), start with .dispatch()."""

    jobs: list[Any]  # Signature, or a Step (a batch) outside batches
    catch: Signature | None = None
    queue: str | None = None  # every job of the chain on this queue, unless it names one

    def first_payload_extra(self, extra: dict | None = None) -> dict[str, Any]:
        body: dict[str, Any] = dict(extra or {})
        body[CHAIN] = [self._queued(s).to_json() for s in self.jobs[1:]]
        if self.catch is not None:
            body[CATCH] = self._queued(self.catch).to_json()
        return body

    def _queued(self, sig: Any) -> Any:
        return sig if sig.queue or not self.queue else sig.on(self.queue)

    def dispatch(self, *, connection: str | None = None,
                 extra: dict | None = None) -> str | None:
        """Queue the first job (carrying the rest); returns its id (a batch's id when
        the chain starts with a batch)."""
        if not self.jobs:
            raise ValueError("a chain needs at least one job")
        first = self._queued(self.jobs[0])
        made = first.dispatch(extra=self.first_payload_extra(extra), connection=connection)
        return made if made is None or isinstance(made, str) else str(made.id)

    def to_json(self) -> dict[str, Any]:
        return {"jobs": [s.to_json() for s in self.jobs],
                "catch": self.catch.to_json() if self.catch is not None else None,
                "queue": self.queue}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Chain:
        catch = body.get("catch")
        return cls([step_from_json(s) for s in body.get("jobs") or []],
                   Signature.from_json(catch) if catch else None, body.get("queue"))


def chain(jobs: Iterable[Signature | Job | str | Step], *,
          catch: Signature | Job | str | None = None, queue: str | None = None) -> Chain:
    """chain([a.s(1), batch([b.s(), c.s()]), d.s()], catch=on_failure.s()).dispatch()"""
    return Chain([_as_step(j) for j in jobs],
                 _as_signature(catch) if catch is not None else None, queue)


def _running_extra() -> dict[str, Any]:
    ctx = current_job()
    if ctx is None:
        raise RuntimeError("append_to_chain/prepend_to_chain work only inside a running job")
    return ctx.payload.extra


def append_to_chain(item: Signature | Job | str) -> None:
    """From inside a job: run item after the last job of this job's chain."""
    extra = _running_extra()
    extra[CHAIN] = [*extra.get(CHAIN, []), _as_signature(item).to_json()]


def prepend_to_chain(item: Signature | Job | str) -> None:
    """From inside a job: run item right after this job, before the rest of its chain."""
    extra = _running_extra()
    extra[CHAIN] = [_as_signature(item).to_json(), *extra.get(CHAIN, [])]


def remaining(payload: Payload) -> list[dict[str, Any]]:
    rest = payload.extra.get(CHAIN)
    return rest if isinstance(rest, list) else []


def continue_chain(payload: Payload) -> object:
    """After payload's job succeeded: queue the next job with the rest of the chain."""
    carry = {name: payload.extra[name] for name in (CATCH, BATCH) if name in payload.extra}
    return continue_from(remaining(payload), carry)


def continue_from(rest: list[dict[str, Any]], carry: dict[str, Any]) -> object:
    """Queue rest's first step carrying the others (and carry: catch, batch); its id,
    a Batch, or None when rest is empty."""
    if not rest:
        return None
    return step_from_json(rest[0]).dispatch(extra={CHAIN: rest[1:], **carry})


def catch_chain(payload: Payload, reason: str) -> str | None:
    """After payload's job failed for good: the rest never runs; queue the catch job
    with a failure dict as its first argument."""
    failure = {"id": payload.id, "job": payload.job, "queue": payload.queue,
               "args": payload.args, "kwargs": payload.kwargs, "reason": reason,
               "skipped": skipped_names(remaining(payload))}
    return run_catch(payload.extra.get(CATCH), failure)


def skipped_names(rest: list[dict[str, Any]]) -> list[str]:
    return [str(s.get("job") or next(iter(s), "?")) for s in rest]


def run_catch(body: object, failure: dict[str, Any]) -> str | None:
    """Queue a chain's catch job (body, its signature as JSON) with failure first."""
    if not isinstance(body, dict):
        return None
    return Signature.from_json(body).dispatch(prepend=[failure])
