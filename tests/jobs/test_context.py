"""The job context and the log binding it sets: a job run inside another (sync
dispatch) gives the outer job back to current_job() and to log records when it ends."""

from __future__ import annotations

import logging

import pytest

from supervisor_q.jobs.context import JobContext, current_job, reset_current_job, set_current_job
from supervisor_q.jobs.encryption import SIGNING_ENV, signing_enabled
from supervisor_q.logs import JobFilter, bind_job
from supervisor_q.queue.payload import build


def _bound() -> tuple[str, str, str] | None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", None, None)
    JobFilter().filter(record)
    return getattr(record, "job_id", None), getattr(record, "job", None), getattr(
        record, "queue", None)


def _context(name: str, queue: str) -> JobContext:
    payload = build(name, queue, [], {})
    return JobContext(payload.id, name, queue, 1, payload)


def test_reset_gives_back_the_outer_job_then_none() -> None:
    bind_job(None)
    outer, inner = _context("app.outer", "a"), _context("app.inner", "b")
    outer_token = set_current_job(outer)
    inner_token = set_current_job(inner)
    assert current_job() is inner and _bound() == (inner.id, "app.inner", "b")
    reset_current_job(inner_token)
    assert current_job() is outer and _bound() == (outer.id, "app.outer", "a")
    reset_current_job(outer_token)
    assert current_job() is None and _bound() == (None, None, None)


def test_the_signing_key_follows_the_environment_between_reads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIGNING_ENV, raising=False)
    assert not signing_enabled()
    monkeypatch.setenv(SIGNING_ENV, "k" * 32)
    assert signing_enabled()
    monkeypatch.setenv(SIGNING_ENV, "")
    assert not signing_enabled()
    monkeypatch.delenv(SIGNING_ENV)
    assert not signing_enabled()
