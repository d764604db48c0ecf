"""outcome.resolve_limits keeps the limits of payloads without options of their own per
declared options: what it returns must be what it computes afresh, whatever was asked
before (another job's options, other program defaults, a payload with options)."""

from __future__ import annotations

from supervisor_q.jobs.options import JobOptions
from supervisor_q.queue.payload import Payload
from supervisor_q.worker import outcome


def _fresh(payload: Payload, declared: JobOptions | None, tries: int = 3,
           backoff: tuple[int, ...] = (1,), timeout: float = 60.0) -> outcome.Limits:
    return outcome._resolve(payload, tries, backoff, timeout, declared)


def test_kept_limits_are_those_computed_afresh() -> None:
    plain = Payload("a", "app.j", "q", dispatched_at=1000.0)
    later = Payload("b", "app.j", "q", dispatched_at=2000.0)
    optioned = Payload("c", "app.j", "q", timeout=5.0, tries=9, backoff=[2, 4],
                       dispatched_at=1000.0)
    cases = [None, JobOptions(), JobOptions(tries=7, timeout=30.0, backoff=(5,)),
             JobOptions(retry_for=100.0), JobOptions(retry_until=5000.0, max_exceptions=2),
             JobOptions(fail_on_timeout=True)]
    for _ in range(2):  # the second time from what the first kept
        for declared in cases:
            for payload in (plain, later, optioned):
                for tries, timeout in ((3, 60.0), (5, 10.0)):
                    got = outcome.resolve_limits(payload, tries=tries, backoff=(1,),
                                                 timeout=timeout, declared=declared)
                    assert got == _fresh(payload, declared, tries, (1,), timeout)
    # a declared retry_for counts from each payload's own dispatch, never from a kept one
    every = JobOptions(retry_for=100.0)
    assert outcome.resolve_limits(later, tries=3, backoff=(1,), timeout=60.0,
                                  declared=every).retry_until == 2100.0


def test_the_kept_limits_stay_bounded_and_right() -> None:
    plain = Payload("a", "app.j", "q")
    for n in range(1, 3 * outcome.PLAIN_KEPT):  # options come from @job declarations
        declared = JobOptions(tries=n)
        got = outcome.resolve_limits(plain, tries=3, backoff=(), timeout=60.0,
                                     declared=declared)
        assert got.tries == n
        assert len(outcome._plain) <= outcome.PLAIN_KEPT
