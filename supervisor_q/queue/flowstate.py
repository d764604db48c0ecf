"""The chain and batch state a payload's extra carries, checked when it is decoded.

workflows/chains.py writes extra["chain"] (the steps still to run: job signatures as
Signature.to_json writes them, or a batch as PendingBatch.to_json does) and
extra["chain_catch"] (a signature); workflows/batches.py writes extra["batch"] (the
batch id, a string). A payload pushed by hand with any other shape is refused before
its job runs, not met after it succeeded. A step's job name is not looked up: a job no
worker knows is failed as unknown by the worker that takes it.
Imports only keys (the queue-name rule) from the package.
"""

from __future__ import annotations

from typing import Any

from supervisor_q.queue.keys import check_queue_name

# chains.CHAIN, chains.CATCH, chains.BATCH (this layer cannot import workflows/)
CHAIN, CATCH, BATCH = "chain", "chain_catch", "batch"
# Longest timeout, backoff step or delay, in seconds (about 31 years): longer ones are
# refused (a delay in ms must stay a whole number Redis and Lua can hold); also the
# longest wait or runtime a child's summary may report (worker/report.py).
MAX_SECONDS = 10**9
MAX_BATCH_ID = 1024  # batches.py makes 36-character UUIDs; ids travel in log lines


SIGNATURE = "a job signature (job, args, kwargs, queue, delay)"
BATCH_STEP = "a batch (items, name, callbacks, queue, allow_failures)"


def check(extra: dict[str, Any]) -> None:
    """ValueError with one line naming the field when extra's chain, chain_catch or
    batch id is not of the shape chains.py and batches.py write."""
    if BATCH in extra:
        batch_id = extra[BATCH]
        if type(batch_id) is not str or not 0 < len(batch_id) <= MAX_BATCH_ID:
            raise ValueError(f"'extra.batch' must be a batch id (a string of 1 to "
                             f"{MAX_BATCH_ID} characters)")
    if CHAIN in extra:
        rest = extra[CHAIN]
        if type(rest) is not list:
            raise ValueError("'extra.chain' must be a list of steps")
        for n, step in enumerate(rest, 1):
            if type(step) is dict and step.keys() == {BATCH}:
                if BATCH in extra:  # batches.py refuses a batch in a batch at dispatch
                    raise ValueError(f"'extra.chain' step {n} is a batch in a batch job's chain")
                if not _is_batch(step[BATCH]):
                    raise ValueError(f"'extra.chain' step {n} must be {BATCH_STEP}")
            elif not _is_signature(step):
                raise ValueError(f"'extra.chain' step {n} must be {SIGNATURE}"
                                 f"{_which(step)}")
    if CATCH in extra and not _is_signature(extra[CATCH]):
        raise ValueError(f"'extra.chain_catch' must be {SIGNATURE}{_which(extra[CATCH])}")


# What each field of a signature must be: _is_signature's checks, and which one failed.
_FIELDS = {
    "job": ("a string", lambda v: type(v) is str),
    "args": ("a list", lambda v: type(v) is list),
    "kwargs": ("an object", lambda v: type(v) is dict),
    "queue": ("a queue name or null", lambda v: v is None or _is_queue(v)),
    "delay": (f"seconds from 0 to {MAX_SECONDS:.0e}",
              lambda v: type(v) in (int, float) and 0 <= v <= MAX_SECONDS),
}
_ABSENT = {"args": [], "kwargs": {}, "delay": 0.0}  # as from_json takes a missing one


def _which(body: object) -> str:
    """': its <field> must be ...' for the first field of body that is wrong, if any."""
    if type(body) is not dict:
        return ""
    for name, (what, ok) in _FIELDS.items():
        if not ok(body.get(name, _ABSENT.get(name))):
            return f": its {name} must be {what}"
    return ""


def _is_queue(name: object) -> bool:
    try:
        check_queue_name(name)
    except ValueError:
        return False
    return True


def _is_signature(body: object) -> bool:
    """body is a Signature as to_json writes it (keys may be left out, as from_json
    takes them): job a string, args a list, kwargs an object, queue a queue name or
    null, delay seconds from 0 to MAX_SECONDS. Other keys are let through, as from_json
    ignores them: a newer release may add one, and its payloads must still run on this
    worker during a rolling deploy."""
    return type(body) is dict and all(ok(body.get(name, _ABSENT.get(name)))
                                      for name, (_, ok) in _FIELDS.items())


def _is_batch(body: object) -> bool:
    """body is the inside of PendingBatch.to_json's {"batch": {...}}: items are chains
    of signatures (no batch in a batch), callbacks signatures by kind."""
    if type(body) is not dict:
        return False
    items, callbacks, queue = body.get("items", []), body.get("callbacks", {}), body.get("queue")
    return (type(items) is list and all(_is_chain(c) for c in items)
            and type(body.get("name", "")) is str
            and type(body.get("allow_failures", False)) is bool
            and (queue is None or _is_queue(queue)) and type(callbacks) is dict
            and all(map(_is_signature, callbacks.values())))


def _is_chain(body: object) -> bool:
    """body is a Chain as to_json writes it: one job or more, each a signature."""
    if type(body) is not dict:
        return False
    jobs, catch, queue = body.get("jobs"), body.get("catch"), body.get("queue")
    return (type(jobs) is list and len(jobs) > 0 and all(map(_is_signature, jobs))
            and (catch is None or _is_signature(catch)) and (queue is None or _is_queue(queue)))
