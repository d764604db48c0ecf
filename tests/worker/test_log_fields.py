"""The job fields a record logged inside a job carries (logs.JobFilter): shown as every
log line shows ids (payload.loggable), so a hostile job id cannot forge a log line, in
text or JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect

HOSTILE = "ev\nFORGED LINE\x1b[31m\r\t\x00\udcff\u2028FORGED2\x85FORGED3\u2029FORGED4"
SHOWN = payloads.loggable(HOSTILE, 100)


def drain(redis_url: str, *flags: str) -> list[str]:
    """Queue tests.log_inside under the hostile id, drain it with `work`; stderr lines."""
    queue = RedisQueue(connect(redis_url))
    built = payloads.build("tests.log_inside", "default", ["A"], {}, job_id=HOSTILE)
    queue.push("default", HOSTILE, payloads.encode(built))
    done = subprocess.run(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, *flags, "work",
         "--queue", "default", "--import", "tests.jobmods.logjobs", "--stop-when-empty"],
        capture_output=True, text=True, errors="surrogateescape", timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr.splitlines()


def test_a_hostile_id_cannot_forge_a_line_through_a_records_job_fields(
        redis_url: str) -> None:
    lines = drain(redis_url)
    [inside] = [line for line in lines if "app: inside A" in line]
    assert inside.endswith(f"(job_id={SHOWN} job=tests.log_inside queue=default)"), inside
    assert SHOWN.startswith("ev\\nFORGED LINE\\x1b[31m\\r\\t\\x00\\xff\\u2028FORGED2"
                            "\\u0085FORGED3\\u2029FORGED4"), SHOWN
    assert not any(line.startswith("FORGED") for line in lines), lines


@pytest.mark.parametrize("fields", ["inside", "job lines"])
def test_json_job_fields_are_the_shown_id(redis_url: str, fields: str) -> None:
    records = [json.loads(line) for line in drain(redis_url, "--log-format", "json")]
    if fields == "inside":
        mine = [r for r in records if r["message"] == "inside A"]
    else:
        mine = [r for r in records if r["logger"] == "supervisor_q.jobs"]
    assert mine and all(r["job_id"] == SHOWN for r in mine), mine
