"""A job that logs and prints, for the output and job-logging tests."""

from __future__ import annotations

import logging
import signal
import time

from supervisor_q import job


@job(name="tests.log_inside")
def log_inside(text: str) -> None:
    logging.getLogger("app").warning("inside %s", text)
    print(f"printed {text}")


@job(name="tests.stuck_sleeping", timeout=1)
def stuck_sleeping() -> None:
    """Past its timeout without using the CPU: SIGALRM and SIGTERM blocked, asleep."""
    from tests.jobmods.basic import record

    record(phase="start")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
    time.sleep(60)
