"""Issue-15 user trial: hostile ids are echoed in their shown form (no control byte
reaches the terminal), an unknown batch is one line and exit 1, and the --range cap is
said. Real server, the real CLI in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import redis

from supervisor_q.queue.failed import record_json
from supervisor_q.queue.keys import QUEUES_KEY, QueueKeys

EVIL = "\x1b[2J\x1b[31mevil\n"
TITLE = "\x1b]0;title\x07"


def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                           *args], capture_output=True, text=True, timeout=30)


def clean(done: subprocess.CompletedProcess) -> bool:
    """No control character but the line ends in what the command printed."""
    out = done.stdout + done.stderr
    return not any(ord(c) < 32 and c != "\n" or ord(c) == 127 for c in out)


def test_unknown_hostile_ids_are_shown_escaped_in_one_line(redis_url: str) -> None:
    for args in (("failed", "forget", EVIL), ("failed", "retry", EVIL),
                 ("failed", "retry-batch", TITLE), ("batches", "show", TITLE),
                 ("batches", "cancel", EVIL)):
        done = cli(redis_url, *args)
        assert done.returncode == 1 and clean(done), (args, done)
        assert done.stderr.count("\n") == 1 and done.stdout == "", (args, done)
        assert "\\x1b" in done.stderr, (args, done)


def test_a_stored_hostile_failed_job_is_listed_and_forgotten_escaped(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    k = QueueKeys("default")
    payload = json.dumps({"id": EVIL, "job": "x.y", "queue": "default"})
    client.sadd(QUEUES_KEY, "default")
    client.zadd(k.failed, {EVIL: 1_700_000_000_000})
    client.hset(k.failed_records, EVIL, record_json(
        {"id": EVIL, "job": "x.y\x1b[31m", "queue": "default", "payload": payload,
         "failed_at": 1_700_000_000, "reason": "bad\x07bell", "attempts": 1}))
    listed = cli(redis_url, "failed", "list")
    assert listed.returncode == 0 and clean(listed) and "\\x1b[2J" in listed.stdout
    forgot = cli(redis_url, "failed", "forget", EVIL)
    assert forgot.returncode == 0 and clean(forgot), forgot
    assert forgot.stdout == "forgot \\x1b[2J\\x1b[31mevil\\n\n"


def test_retry_batch_of_an_unknown_batch_is_one_line_and_exit_1(redis_url: str) -> None:
    done = cli(redis_url, "failed", "retry-batch", "nosuch-batch")
    assert done.returncode == 1 and done.stderr == "no batch nosuch-batch\n", done


def test_the_range_cap_is_said(redis_url: str) -> None:
    done = cli(redis_url, "failed", "retry", "--range", "102990-10000000")
    assert done.returncode == 2 and "at most 1,000,000 rows per range" in done.stderr, done


def test_a_failed_job_whose_payload_was_unreadable_is_listed_as_such(redis_url: str) -> None:
    """A payload that was not JSON has no job name in its failed record: the text listing
    says so, not "None" (issue-15 re-check trial)."""
    client = redis.Redis.from_url(redis_url)
    k = QueueKeys("default")
    client.sadd(QUEUES_KEY, "default")
    client.zadd(k.failed, {"bad-1": 1_700_000_000_000})
    client.hset(k.failed_records, "bad-1", record_json(
        {"id": "bad-1", "job": None, "queue": "default", "payload": "{not json",
         "failed_at": 1_700_000_000, "reason": "payload is not valid JSON", "attempts": 1}))
    listed = cli(redis_url, "failed", "list")
    assert listed.returncode == 0 and "bad-1" in listed.stdout, listed
    assert "(unreadable payload)" in listed.stdout and "None" not in listed.stdout
