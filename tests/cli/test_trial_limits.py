"""Issue-15 user trial: an absurd prefetch is refused in one line by check-config and
`work`, and `failed list --json` shows failed_at as the list is ordered (whole ms)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis

from supervisor_q.queue.failed import record_json
from supervisor_q.queue.keys import QUEUES_KEY, QueueKeys


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", *args],
                          capture_output=True, text=True, timeout=30)


def test_a_huge_prefetch_is_refused_by_check_config_and_work(tmp_path: Path,
                                                             redis_url: str) -> None:
    (tmp_path / "w.yaml").write_text("queues: [q]\nprefetch: 100000000000\n")
    checked = cli("check-config", str(tmp_path))
    assert checked.returncode == 1 and "prefetch" in checked.stderr, checked
    assert "1000" in checked.stderr and checked.stderr.count("\n") <= 2, checked
    (tmp_path / "w.yaml").write_text("queues: [q]\nprefetch: 1000\n")
    assert cli("check-config", str(tmp_path)).returncode == 0
    worked = cli("--redis-url", redis_url, "work", "--queue", "q", "--prefetch",
                 "100000000000")
    assert worked.returncode == 2 and worked.stderr.count("\n") == 1, worked
    assert "--prefetch 100000000000 (must be 1..1000)" in worked.stderr, worked
    assert "--tries" not in worked.stderr, "only what is wrong is named"


def test_failed_list_json_shows_failed_at_in_the_order_of_the_list(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    k = QueueKeys("default")
    client.sadd(QUEUES_KEY, "default")
    # Two failures in the same millisecond, and one a moment later.
    for job_id, at in (("a", 1_700_000_000.1234567), ("b", 1_700_000_000.1239999),
                       ("c", 1_700_000_000.1241)):
        client.zadd(k.failed, {job_id: int(at * 1000)})
        client.hset(k.failed_records, job_id, record_json(
            {"id": job_id, "job": "x.y", "queue": "default", "payload": "{}",
             "failed_at": at, "reason": "r", "attempts": 1}))
    done = cli("--redis-url", redis_url, "failed", "list", "--json")
    rows = json.loads(done.stdout)
    shown = [r["failed_at"] for r in rows]
    assert shown[0] == 1_700_000_000.124 and shown[1:] == [1_700_000_000.123] * 2, shown
    assert shown == sorted(shown, reverse=True)
