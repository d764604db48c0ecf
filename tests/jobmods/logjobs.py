"""A job that logs and prints, for the output and job-logging tests."""

from __future__ import annotations

import logging

from supervisor_q import job


@job(name="tests.log_inside")
def log_inside(text: str) -> None:
    logging.getLogger("app").warning("inside %s", text)
    print(f"printed {text}")
