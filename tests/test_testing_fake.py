"""The application-test helpers: the queue fake's assertions, and sync mode."""

from __future__ import annotations

import subprocess
import sys

import pytest

from supervisor_q.jobs import dispatching
from supervisor_q.testing import fake_queue
from supervisor_q.workflows.batches import batch
from supervisor_q.workflows.chains import chain
from tests.jobmods.flows import bjob, step, step_fail, then_cb
from tests.workers import results


def test_fake_records_dispatches_and_asserts_on_them() -> None:
    with fake_queue() as fake:
        fake.assert_nothing_dispatched()
        step.dispatch(1)
        step.dispatch(2, delay=5)
    assert fake.dispatched[1].delay == 5
    fake.assert_dispatched(step)
    fake.assert_dispatched(step, lambda value: value == 2)
    fake.assert_dispatched_times(step, 2)
    fake.assert_not_dispatched(step_fail)
    fake.assert_not_dispatched(step, lambda value: value == 3)
    with pytest.raises(AssertionError, match="not dispatched"):
        fake.assert_dispatched(step, lambda value: value == 3)
    with pytest.raises(AssertionError, match="2 time"):
        fake.assert_dispatched_times(step, 1)
    with pytest.raises(AssertionError):
        fake.assert_nothing_dispatched()


def test_fake_records_chains_in_order_and_batches() -> None:
    with fake_queue() as fake:
        chain([step.s(1), step_fail.s(2), step.s(3)]).dispatch()
        fake.assert_nothing_batched()
        batch([bjob.s(1), bjob.s(2)], name="import", then=then_cb.s()).dispatch()
    fake.assert_chained([step, step_fail, step])
    fake.assert_chained([step.s(1), step_fail.s(2), step.s(3)])
    with pytest.raises(AssertionError, match="no chain"):
        fake.assert_chained([step, step])
    with pytest.raises(AssertionError):
        fake.assert_chained([step.s(9), step_fail, step])
    fake.assert_batched(lambda b: b.name == "import" and b.job_names == ["flows.bjob"] * 2)
    with pytest.raises(AssertionError, match="no matching batch"):
        fake.assert_batched(lambda b: b.name == "other")
    with pytest.raises(AssertionError, match="batch"):
        fake.assert_nothing_batched()


def test_fake_is_removed_after_the_block(redis_url: str) -> None:
    with fake_queue():
        pass
    assert dispatching.active_fake() is None


def test_sync_mode_runs_jobs_and_chains_inline(redis_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dispatching.SYNC_ENV, "1")
    step.dispatch("now")
    assert [r["value"] for r in results(redis_url, "step")] == ["now"]
    chain([step.s(1), step.s(2)]).dispatch()
    assert [r["value"] for r in results(redis_url, "step")] == ["now", 1, 2]
    with pytest.raises(RuntimeError, match="step x broke"):
        step_fail.dispatch("x")
    assert results(redis_url, "step_fail")[0]["value"] == "x"


def test_sync_setting_beats_the_environment(redis_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dispatching.SYNC_ENV, "1")
    dispatching.set_sync(False)
    try:
        step.dispatch("queued")
    finally:
        dispatching.set_sync(None)
    assert results(redis_url, "step") == []


def test_public_names_load_on_first_use_and_match_all() -> None:
    """`import supervisor_q` stays light; every name in __all__ loads; none is missing."""
    code = (
        "import sys, supervisor_q\n"
        "assert not [m for m in sys.modules if m.startswith('supervisor_q.')], sys.modules\n"
        "import supervisor_q.queue.keys, supervisor_q.ctl.protocol\n"
        "assert 'supervisor_q.jobs.registry' not in sys.modules\n"
        "names = set(supervisor_q._EXPORTS) | set(supervisor_q._MODULES)\n"
        "assert set(supervisor_q.__all__) == names\n"
        "for name in supervisor_q.__all__: getattr(supervisor_q, name)\n"
        "from supervisor_q import job, append_to_chain, WithoutOverlapping, events\n"
        "assert 'supervisor_q.worker.sync' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
