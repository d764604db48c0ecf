"""Jobs for the workflow and control tests. Each records what it did in the Redis list
`results` (see tests.jobmods.basic.record), so tests observe real runs."""

from __future__ import annotations

import time

from supervisor_q import job
from supervisor_q.jobs.controls import Funnel, Throttle, ThrottlesExceptions, WithoutOverlapping
from supervisor_q.jobs.dispatching import queue_for
from supervisor_q.jobs.middleware import Skip
from supervisor_q.workflows.batches import current_batch
from supervisor_q.workflows.chains import append_to_chain, prepend_to_chain
from tests.jobmods.basic import record


@job(name="flows.step")
def step(value: object = None) -> None:
    record(kind="step", value=value)


@job(name="flows.step_fail")
def step_fail(value: object = None) -> None:
    record(kind="step_fail", value=value)
    raise RuntimeError(f"step {value} broke")


@job(name="flows.on_catch")
def on_catch(failure: dict, note: str = "") -> None:
    record(kind="catch", failure=failure, note=note)


@job(name="flows.grow_chain")
def grow_chain() -> None:
    record(kind="step", value="grow")
    append_to_chain(step.s("appended"))
    prepend_to_chain(step.s("prepended"))


@job(name="flows.bjob")
def bjob(i: int, seconds: float = 0.0, broken: bool = False) -> None:
    """broken: raise until the test sets the Redis key `fixed`."""
    batch = current_batch()
    if batch is not None and batch.cancelled:
        record(kind="skipped", value=i)
        return
    time.sleep(seconds)
    if broken and not queue_for().client.get("fixed"):
        record(kind="bjob_broken", value=i)
        raise RuntimeError(f"bjob {i} broke")
    record(kind="bjob", value=i)


@job(name="flows.add_more")
def add_more(count: int) -> None:
    batch = current_batch()
    assert batch is not None
    batch.add([bjob.s(100 + i) for i in range(count)])
    record(kind="bjob", value="adder")


@job(name="flows.then")
def then_cb(info: dict) -> None:
    record(kind="then", info=info)


@job(name="flows.catch")
def catch_cb(info: dict) -> None:
    record(kind="batch_catch", info=info)


@job(name="flows.finally")
def finally_cb(info: dict) -> None:
    record(kind="finally", info=info)


@job(name="flows.unique", unique_for=30, unique_id=lambda key, seconds=0.0: key)
def unique_job(key: str, seconds: float = 0.0) -> None:
    record(kind="unique", value=key)
    time.sleep(seconds)


@job(name="flows.unique_short", unique_for=1.0, unique_id=lambda key: key)
def unique_short(key: str) -> None:
    record(kind="unique", value=key)


@job(name="flows.unique_processing", unique_for=30, unique_id=lambda key, seconds=0.0: key,
     unique_until="processing")
def unique_processing(key: str, seconds: float = 0.0) -> None:
    record(kind="unique", value=key, phase="start")
    time.sleep(seconds)


@job(name="flows.overlap", middleware=[WithoutOverlapping(lambda key, i, seconds: key,
                                                          release_after=0.05)])
def overlap_job(key: str, i: int, seconds: float) -> None:
    record(kind="overlap", key=key, value=i, phase="start")
    time.sleep(seconds)
    record(kind="overlap", key=key, value=i, phase="end")


@job(name="flows.overlap_drop", middleware=[WithoutOverlapping("drop", dont_release=True)])
def overlap_drop(i: int, seconds: float) -> None:
    record(kind="overlap_drop", value=i)
    time.sleep(seconds)


@job(name="flows.throttled", middleware=[Throttle("rate", allow=3, every=1.0)])
def throttled(i: int) -> None:
    record(kind="throttled", value=i)


@job(name="flows.funnel", middleware=[Funnel("funnel", limit=2, release_after=0.05)])
def funnel_job(i: int, seconds: float) -> None:
    record(kind="funnel", value=i, phase="start")
    time.sleep(seconds)
    record(kind="funnel", value=i, phase="end")


@job(name="flows.flaky", tries=10,
     middleware=[ThrottlesExceptions("flaky", max_exceptions=2, decay=1.5)])
def flaky() -> None:
    record(kind="flaky")
    raise ConnectionError("service down")


@job(name="flows.secret", encrypted=True)
def secret(value: str) -> None:
    record(kind="secret", value=value)


@job(name="flows.before")
def before_cb(info: dict) -> None:
    record(kind="before", info=info)


@job(name="flows.progress")
def progress_cb(info: dict) -> None:
    record(kind="progress", info=info)


def _flagged(i: int) -> bool:
    """Read at run time: the Redis key skip:<i> is set."""
    return bool(queue_for().client.exists(f"skip:{i}"))


@job(name="flows.skip_when", middleware=[Skip.when(_flagged)])
def skip_when(i: int) -> None:
    record(kind="ran_when", value=i)


@job(name="flows.skip_unless", middleware=[Skip.unless(_flagged)])
def skip_unless(i: int) -> None:
    record(kind="ran_unless", value=i)


@job(name="flows.skip_always", tries=1, middleware=[Skip.when(True)])
def skip_always(i: int) -> None:
    record(kind="ran_always", value=i)
    raise RuntimeError("a skipped job never runs")
