"""Chains: jobs that run one after another.

The rest of a chain travels in the running job's payload (extra["chain"], a list of
signatures as JSON), so no chain state can be lost apart from its job. When a job
succeeds the worker dispatches the next one with the rest; when one fails for good
the rest are dropped and the optional catch job runs with the failure.
Callbacks are registered job names, never closures. Signature (a job name with
arguments) is the job API's, in jobs/registry.py. Imports registry, context, payload.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from supervisor_q.jobs.context import current_job
from supervisor_q.jobs.registry import Job, Signature, signature
from supervisor_q.queue.payload import Payload

log = logging.getLogger("supervisor_q.workflows")

CHAIN = "chain"  # payload.extra: list of signature dicts still to run after this job
CATCH = "chain_catch"  # payload.extra: signature dict run when a chain job fails for good
BATCH = "batch"  # payload.extra: batch id (see batches.py)


def _as_signature(item: Signature | Job | str) -> Signature:
    if isinstance(item, Signature):
        return item
    return signature(item)


@dataclass
class Chain:
    """Jobs that run in order; build with chain([...]), start with .dispatch()."""

    jobs: list[Signature]
    catch: Signature | None = None
    queue: str | None = None  # every job of the chain on this queue, unless it names one

    def first_payload_extra(self, extra: dict | None = None) -> dict[str, Any]:
        body: dict[str, Any] = dict(extra or {})
        body[CHAIN] = [self._queued(s).to_json() for s in self.jobs[1:]]
        if self.catch is not None:
            body[CATCH] = self._queued(self.catch).to_json()
        return body

    def _queued(self, sig: Signature) -> Signature:
        return sig if sig.queue or not self.queue else sig.on(self.queue)

    def dispatch(self, *, connection: str | None = None,
                 extra: dict | None = None) -> str | None:
        """Queue the first job (carrying the rest); returns its id."""
        if not self.jobs:
            raise ValueError("a chain needs at least one job")
        first = self._queued(self.jobs[0])
        return first.dispatch(extra=self.first_payload_extra(extra), connection=connection)


def chain(jobs: Iterable[Signature | Job | str], *, catch: Signature | Job | str | None = None,
          queue: str | None = None) -> Chain:
    """chain([a.s(1), b.s(2), c.s()], catch=on_failure.s()).dispatch()"""
    return Chain([_as_signature(j) for j in jobs],
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


def continue_chain(payload: Payload) -> str | None:
    """After payload's job succeeded: queue the next job with the rest of the chain."""
    rest = remaining(payload)
    if not rest:
        return None
    extra: dict[str, Any] = {CHAIN: rest[1:]}
    for name in (CATCH, BATCH):
        if name in payload.extra:
            extra[name] = payload.extra[name]
    return Signature.from_json(rest[0]).dispatch(extra=extra)


def catch_chain(payload: Payload, reason: str) -> str | None:
    """After payload's job failed for good: the rest never runs; queue the catch job
    with a failure dict as its first argument."""
    body = payload.extra.get(CATCH)
    if not isinstance(body, dict):
        return None
    failure = {"id": payload.id, "job": payload.job, "queue": payload.queue,
               "args": payload.args, "kwargs": payload.kwargs, "reason": reason,
               "skipped": [s.get("job") for s in remaining(payload)]}
    return Signature.from_json(body).dispatch(prepend=[failure])
