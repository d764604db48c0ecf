"""Jobs for the hot-path tests (tests/worker/test_hot_path.py)."""

from __future__ import annotations

from supervisor_q import job
from supervisor_q.jobs.dispatching import queue_for
from tests.jobmods.basic import record


@job(name="tests.record_then_pause_writes")
def record_then_pause_writes(ms: int) -> None:
    """Records its run, then pauses the server's writes for ms: the worker's next call
    (the ack of this job with the next reserve) waits on the server, this job's finish
    report held back in the child meanwhile."""
    record(phase="ran")
    queue_for().client.execute_command("CLIENT", "PAUSE", ms, "WRITE")
