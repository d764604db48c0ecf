"""Jobs for the job-lookup tests (tests/jobs/test_lookup.py)."""

from __future__ import annotations

import os
import time

from supervisor_q import job


@job(name="look.ret", keep_result=60)
def ret(value: object = None) -> dict:
    return {"got": value}


@job(name="look.plain")
def plain() -> str:
    return "not kept"


@job(name="look.nonjson", keep_result=60)
def nonjson() -> object:
    return object()


@job(name="look.boom")
def boom() -> None:
    raise ValueError("kaput")


@job(name="look.flaky", tries=3, backoff=[60])
def flaky() -> None:
    raise RuntimeError("try again later")


@job(name="look.hold", timeout=30)
def hold(path: str) -> None:
    """Run until path exists (at most 20 s): a job seen while it runs."""
    deadline = time.monotonic() + 20
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
