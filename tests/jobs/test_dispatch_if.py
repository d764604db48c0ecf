"""dispatch_if / dispatch_unless, on a Job and by name, against a real Redis (issue 14)."""

from __future__ import annotations

import supervisor_q
import tests.jobmods.basic as basic
from tests.helpers import ready_ids


def test_dispatch_if_and_unless_push_only_when_the_condition_says_so(redis_url: str) -> None:
    pushed = [
        basic.record_job.dispatch_if(True, "a"),
        basic.record_job.dispatch_unless(False, "b"),
        supervisor_q.dispatch_if(lambda: 1, "tests.record", "c"),  # a callable is called
        supervisor_q.dispatch_unless(0, basic.record_job, "d"),
    ]
    skipped = [
        basic.record_job.dispatch_if(False, "x"),
        basic.record_job.dispatch_unless(True, "x"),
        supervisor_q.dispatch_if(lambda: [], "tests.record", "x"),
        supervisor_q.dispatch_unless("yes", basic.record_job, "x"),
    ]
    assert all(pushed) and skipped == [None] * 4
    assert ready_ids(redis_url) == pushed
