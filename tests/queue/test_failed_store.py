"""The failed store at scale: a page by zset ranks, chunked retry all and prune, and
`failed retry --range` by the list's row numbers."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import redis

from supervisor_q.queue.backend import RedisQueue, connect
from supervisor_q.queue.failed import record_json
from supervisor_q.queue.keys import QUEUES_KEY, QueueKeys


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def put_failed(client: redis.Redis | redis.RedisCluster, queue: str, job_id: str,
               at_ms: int) -> None:
    """A failed job as the FAIL script leaves it: zset id -> ms, hash id -> record."""
    k = QueueKeys(queue)
    payload = json.dumps({"id": job_id, "job": "tests.noop", "queue": queue, "args": []})
    record = {"id": job_id, "job": "tests.noop", "queue": queue, "payload": payload,
              "failed_at": at_ms / 1000, "reason": "boom", "attempts": 1}
    client.sadd(QUEUES_KEY, queue)
    client.zadd(k.failed, {job_id: at_ms})
    client.hset(k.failed_records, job_id, record_json(record))


def expected_order(rows: list[tuple[str, str, int]]) -> list[str]:
    """Newest first; ties by queue name, then id descending (the documented order)."""
    by_queue = sorted(rows, key=lambda r: r[1], reverse=True)  # id descending...
    by_queue.sort(key=lambda r: r[0])  # ...within queue name (stable sorts)
    by_queue.sort(key=lambda r: -r[2])
    return [f"{q}/{i}" for q, i, _ in by_queue]


def seed(client: redis.Redis | redis.RedisCluster, queues: list[str]) -> list[str]:
    """37 failed jobs over the queues, with ties inside a queue and across queues."""
    rows = []
    for n in range(37):
        q = queues[n % len(queues)]
        at = 1_700_000_000_000 + (n // 4) * 7  # groups of 4 share a millisecond
        rows.append((q, f"j{n:02d}", at))
        put_failed(client, q, f"j{n:02d}", at)
    return expected_order(rows)


def shown(records: list[dict]) -> list[str]:
    return [f"{r['queue']}/{r['id']}" for r in records]


def test_every_page_of_every_size_is_the_slice_of_the_whole_order(queue: RedisQueue) -> None:
    want = seed(queue.client, ["b", "a", "c"])
    assert shown(queue.failed_page(None, 0, 100)[0]) == want
    for count in (1, 3, 5, 50):
        for start in range(0, 40):
            page, total = queue.failed_page(None, start, count)
            assert total == 37
            assert shown(page) == want[start:start + count], (start, count)


def test_uneven_queues_and_random_ties_page_right(queue: RedisQueue) -> None:
    rng = random.Random(7)
    rows = []
    for name, size in (("a", 30), ("b", 1), ("c", 5), ("d", 0)):
        for n in range(size):
            at = 1_700_000_000_000 + rng.randrange(12) * rng.choice((1, 1000))
            rows.append((name, f"x{n:02d}", at))
            put_failed(queue.client, name, f"x{n:02d}", at)
    queue.client.sadd(QUEUES_KEY, "d")
    want = expected_order(rows)
    for start in range(0, 37):
        assert shown(queue.failed_page(None, start, 4)[0]) == want[start:start + 4], start


def test_one_queue_pages_and_an_empty_store(queue: RedisQueue) -> None:
    assert queue.failed_page(None, 0, 10) == ([], 0)
    want = [w for w in seed(queue.client, ["a", "b"]) if w.startswith("b/")]
    assert shown(queue.failed_page(["b"], 3, 4)[0]) == want[3:7]
    assert queue.failed_page(["b"], 0, 1)[1] == len(want)


def test_retry_all_in_chunks_queues_every_job_once(queue: RedisQueue) -> None:
    seed(queue.client, ["a", "b"])
    queue.client.hdel(QueueKeys("a").failed_records, "j00")  # a record gone: skipped
    assert queue.retry_all_failed(chunk=5) == 36
    ready = queue.client.lrange(QueueKeys("a").ready, 0, -1)
    assert len(ready) == len(set(ready)) == 18 and queue.counts("b")["ready"] == 18
    assert queue.client.hget(QueueKeys("b").payloads, "j01") is not None
    assert queue.failed_page()[1] == 1  # j00 has no record to retry: left as it was


def test_prune_in_chunks_forgets_only_the_old(queue: RedisQueue) -> None:
    seed(queue.client, ["a", "b"])
    cutoff = (1_700_000_000_000 + 5 * 7 - 1) / 1000  # groups 0..4 (20 jobs) are older
    assert queue.prune_failed(cutoff, chunk=3) == 20
    left = queue.failed_page(None, 0, 100)[0]
    assert len(left) == 17 and all(r["failed_at"] >= cutoff for r in left)
    assert queue.client.hlen(QueueKeys("a").failed_records) + \
        queue.client.hlen(QueueKeys("b").failed_records) == 17


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", url, *args],
                          capture_output=True, text=True, timeout=30)


def test_failed_list_numbers_rows_and_retry_range_takes_them_back(
        queue: RedisQueue, redis_url: str) -> None:
    want = seed(queue.client, ["a", "b"])
    listed = cli(redis_url, "failed", "list", "--per-page", "5", "--page", "2")
    lines = listed.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines[:5]] == ["6", "7", "8", "9", "10"]
    assert [line.split("  ")[1] for line in lines[:5]] == [w[2:] for w in want[5:10]]
    assert lines[5] == "(page 2; 37 in all; --page 3 for more)"
    as_json = json.loads(cli(redis_url, "failed", "list", "--json", "--page", "8",
                             "--per-page", "5").stdout)
    assert [(e["row"], e["id"]) for e in as_json] == [(36, want[35][2:]), (37, want[36][2:])]

    retried = cli(redis_url, "failed", "retry", "--range", "2-3,6", "--range", "3")
    assert retried.stdout == "queued 3 failed job(s) again\n", retried.stderr
    ready = {f"{q}/{i.decode()}" for q in ("a", "b")
             for i in queue.client.lrange(QueueKeys(q).ready, 0, -1)}
    assert ready == {want[1], want[2], want[5]}
    # Past the end: the rows that exist are retried, the rest said, exit 1.
    past = cli(redis_url, "failed", "retry", "--range", "34-99")
    assert past.returncode == 1 and "rows 34-99: the list has 34 row(s)" in past.stderr
    assert past.stdout == "queued 1 failed job(s) again\n"


@pytest.mark.parametrize("value", ["0-3", "5-2", "x", "1-", "-3"])
def test_a_bad_range_is_one_line(redis_url: str, value: str) -> None:
    result = cli(redis_url, "failed", "retry", "--range", value)
    assert result.returncode == 2
    assert "is not a row range like 3, 1-5 or 1-5,9" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 3


def test_the_dashboards_retry_all_runs_in_chunks(redis_url: str, queue: RedisQueue) -> None:
    from tests.web.dashboard import client_for, csrf_of

    client, _ = client_for(redis_url)
    seed(queue.client, ["a", "b"])
    csrf = csrf_of(client.get("/failed").text)
    done = client.post("/actions/failed", data={"csrf": csrf, "action": "retry",
                                                "scope": "all", "next": "/failed"})
    assert done.status_code == 303 and "37+of+37" in done.headers["location"]
    assert queue.counts("a")["ready"] + queue.counts("b")["ready"] == 37
    assert queue.failed_page()[1] == 0
