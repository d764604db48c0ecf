"""Chains with real workers: order, stop on failure + catch, append/prepend from a job."""

from __future__ import annotations

from supervisor_q.workflows.chains import chain
from tests.helpers import wait_until
from tests.jobmods.flows import grow_chain, on_catch, step, step_fail
from tests.workers import results, running


def test_chain_stops_at_a_failure_and_runs_catch_once(redis_url: str) -> None:
    first = chain([step.s(1), step_fail.s(2), step.s(3)], catch=on_catch.s(note="n")).dispatch()
    assert first
    with running(redis_url, 2):
        wait_until(lambda: results(redis_url, "catch"), timeout=15, message="catch job")
        wait_until(lambda: len(results(redis_url, "step_fail")) == 1, timeout=5)
    assert [r["value"] for r in results(redis_url, "step")] == [1], "job 3 must not run"
    [caught] = results(redis_url, "catch")
    assert caught["note"] == "n"
    failure = caught["failure"]
    assert failure["job"] == "flows.step_fail" and failure["args"] == [2]
    assert "step 2 broke" in failure["reason"]
    assert failure["skipped"] == ["flows.step"]


def test_chain_runs_in_order_and_grows_from_inside(redis_url: str) -> None:
    chain([step.s(1), grow_chain.s(), step.s(3)]).dispatch()
    with running(redis_url, 2):
        wait_until(lambda: len(results(redis_url, "step")) == 5, timeout=15)
    assert [r["value"] for r in results(redis_url, "step")] == [
        1, "grow", "prepended", 3, "appended"]
