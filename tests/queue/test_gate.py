"""The master's Redis gate (queue/faults.py: Gate): the rule every master caller follows.
Pure bookkeeping: the errors are redis-py's own exception objects, nothing is mocked."""

from __future__ import annotations

import logging

import redis

from supervisor_q.queue.faults import Gate

log = logging.getLogger("test")


def test_a_timeout_closes_the_gate_and_the_probe_waits_for_the_next_turn() -> None:
    gate = Gate()
    assert gate.open and gate.due()
    assert gate.fault(redis.TimeoutError("Timeout reading from socket"), log, "fleet")
    assert not gate.open, "every caller but the probe skips Redis now"
    gate.retry_at = 0.0  # even once the backoff has passed (a turn that ran long)...
    assert not gate.due(), "...no second timed-out call in the same turn"
    gate.new_turn()
    assert gate.due() and not gate.open
    assert gate.as_dict()["ok"] is False and "TimeoutError" in gate.as_dict()["error"]
    gate.report(None, log, "master")  # the probe got an answer
    assert gate.open and gate.as_dict() == {"ok": True}


def test_an_error_reply_leaves_the_gate_open() -> None:
    gate = Gate()
    assert not gate.fault(redis.ResponseError("WRONGTYPE Operation against a key"), log, "x")
    assert gate.open and gate.due()
