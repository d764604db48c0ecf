"""`supervisor-q work` logs a line at each job's start and end; --quiet does not."""

from __future__ import annotations

import subprocess
import sys

import tests.jobmods.basic  # noqa: F401  (registers the jobs dispatched by name)
from supervisor_q.jobs.registry import dispatch


def _work_once(redis_url: str, *flags: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work", "--once",
         "--import", "tests.jobmods.basic", *flags],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_work_logs_each_jobs_start_and_end_unless_quiet(redis_url: str) -> None:
    job_id = dispatch("tests.boom")
    stderr = _work_once(redis_url)
    assert f"supervisor_q.jobs: job {job_id} tests.boom on default: started (attempt 1)" \
        in stderr
    assert f"supervisor_q.jobs: job {job_id} tests.boom on default: failed in " in stderr
    quiet_id = dispatch("tests.noop")
    assert f"job {quiet_id}" not in _work_once(redis_url, "--quiet")
