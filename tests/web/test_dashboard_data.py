"""The dashboard's metric charts and job lookup, on data written by the real writers: the
masters' bucket flush (observe/buckets.py) and a real `work` process (done records)."""

from __future__ import annotations

import subprocess
import sys
import time

from supervisor_q.observe.buckets import flush
from supervisor_q.queue import payload as payloads
from tests.web.dashboard import client_for, failed_job


def test_series_sums_the_fleet_buckets_per_minute(redis_url: str) -> None:
    client, queue = client_for(redis_url)
    failed_job(queue, "app:x", "q1")
    failed_job(queue, "app:x", "q2")  # both queues known
    now_minute = int(queue.client.time()[0]) // 60
    earlier = now_minute - 3
    flush(queue.client, {
        "q1": {f"{earlier}:app:a:done": 4, f"{earlier}:app:a:runtime_ms": 2000,
               f"{earlier}:app:b:failed": 1, f"{earlier}:app:b:runtime_ms": 500},
        "q2": {f"{earlier}:app:c:done": 5, f"{earlier}:app:c:runtime_ms": 2500,
               f"{now_minute - 200}:app:c:done": 7}}, retention=86400)
    hour = client.get("/api/series", params={"range": "hour"}).json()
    i = hour["t"].index(earlier * 60)
    assert hour["throughput"][i] == 10 and hour["failed"][i] == 1
    assert hour["runtime"][i] == 0.5, "5000 ms over 10 finished jobs"
    assert 7 not in hour["throughput"], "200 minutes ago is outside the last hour"
    day = client.get("/api/series", params={"range": "day", "queue": "q2"}).json()
    assert day["throughput"][day["t"].index((now_minute - 200) * 60)] == 7
    assert day["throughput"][day["t"].index(earlier * 60)] == 5


def test_recent_jobs_and_job_detail_of_a_done_job(redis_url: str) -> None:
    client, queue = client_for(redis_url)
    failed_id = failed_job(queue, "app:broken", exception="ValueError: <b>bad</b>")
    p = payloads.build("tests.noop", "default", [], {})
    queue.push("default", p.id, payloads.encode(p))
    subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work",
                    "--queue", "default", "--import", "tests.jobmods.basic",
                    "--stop-when-empty"], check=True, timeout=30, capture_output=True)
    listing = client.get("/jobs")
    assert f'data-id="{p.id}"' in listing.text and f'data-id="{failed_id}"' in listing.text
    assert listing.text.index(p.id) < listing.text.index(failed_id), "newest first"
    detail = client.get(f"/jobs/{p.id}")
    assert detail.status_code == 200
    assert "<dt>state</dt><dd>done" in detail.text and "tests.noop" in detail.text
    assert time.strftime("%Y-%m-%d", time.gmtime()) in detail.text  # started/ended shown
    failed = client.get(f"/jobs/{failed_id}").text
    assert "&lt;b&gt;bad&lt;/b&gt;" in failed and "Retry or forget it" in failed
    assert p.id in client.get("/queues/default").text
