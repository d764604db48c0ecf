"""Jobs with on_failure handlers, for tests/jobs/test_on_failure.py. Each run and each
handler call leaves a record in Redis (basic.record)."""

from __future__ import annotations

import ctypes
import signal

from supervisor_q import job
from tests.jobmods.basic import record


def note_failure(reason: str, *args: object, **kwargs: object) -> None:
    record(kind="on_failure", reason=reason, args=list(args), kwargs=kwargs)


@job(name="tests.always_fails", tries=3, on_failure=note_failure)
def always_fails(user_id: int, note: str = "") -> None:
    record(kind="attempt", value=user_id)
    raise ValueError(f"no user {user_id}")


@job(name="tests.stuck_then_fails", timeout=1, tries=2)
def stuck_then_fails(user_id: int) -> None:
    """Blocks SIGALRM and SIGTERM and sleeps in C: only the master's SIGKILL ends it."""
    record(kind="attempt", value=user_id)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
    ctypes.CDLL(None).sleep(30)


@stuck_then_fails.on_failure
def stuck_failed(reason: str, user_id: int) -> None:
    record(kind="on_failure", reason=reason, args=[user_id], kwargs={})
