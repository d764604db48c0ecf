"""Ids of any bytes (not UTF-8, newline, markup) as a user meets them: pushed raw, failed
by a real worker ("no payload"), then shown, linked, looked up, retried and forgotten by
the dashboard, the CLI and job_status() in their shown form (queue/ids.py)."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from urllib.parse import unquote

import redis

from supervisor_q import job_status
from tests.web.dashboard import client_for, csrf_of

ODD = [b"only\xffbyte", b"with\nnewline", b"evil\xff\n<script>x</script>"]
SHOWN = ["only\\xffbyte", "with\\nnewline", "evil\\xff\\n<script>x</script>"]  # as `failed list`


def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                           *args], capture_output=True, text=True, timeout=60)


def fail_raw_ids(redis_url: str) -> None:
    """Push each id raw into sq:{tq}:ready with a notify token and no payload; a real
    worker fails them all with "no payload"."""
    client = redis.Redis.from_url(redis_url)
    for job_id in ODD:
        client.rpush("sq:{tq}:ready", job_id)
        client.rpush("sq:{tq}:notify", "1")
    client.sadd("sq:queues", "tq")
    done = cli(redis_url, "work", "--queue", "tq", "--import", "tests.jobmods.basic",
               "--stop-when-empty")
    assert done.returncode == 0, done.stderr[-2000:]
    assert client.zcard("sq:{tq}:failed") == len(ODD)


def test_dashboard_links_looks_up_retries_and_forgets_ids_of_any_bytes(
        redis_url: str) -> None:
    fail_raw_ids(redis_url)
    client, queue = client_for(redis_url)
    for path in ("/failed", "/queues/tq", "/jobs"):
        assert client.get(path).status_code == 200, path
    page = client.get("/failed").text
    links = [html.unescape(h) for h in re.findall(r'href="(/failed/tq/[^"]+)"', page)]
    assert len(links) == len(ODD), page
    shown = set(SHOWN)
    assert {unquote(h.removeprefix("/failed/tq/")) for h in links} == shown
    for link in links:
        assert client.get(link).status_code == 200, link
    for job_id in shown:
        assert client.get("/jobs/" + job_id.replace("\\", "%5C")).status_code == 200, job_id
    found = client.get("/jobs", params={"id": "with\\nnewline"})  # typed in the search box
    assert found.status_code == 303 and client.get(found.headers["location"]).status_code == 200
    boxes = [html.unescape(v) for v in re.findall(r'name="job" value="([^"]+)"', page)]
    csrf = csrf_of(page)
    retried = client.post("/actions/failed", data={"csrf": csrf, "action": "retry",
                                                   "job": boxes[:1], "next": "/failed"})
    assert "1+of+1" in retried.headers["location"], retried.headers["location"]
    forgot = client.post("/actions/failed", data={"csrf": csrf, "action": "forget",
                                                  "job": boxes[1:], "next": "/failed"})
    assert "2+of+2" in forgot.headers["location"], forgot.headers["location"]
    assert queue.failed_records() == [] and queue.counts("tq")["ready"] == 1


def test_cli_and_job_status_take_ids_as_failed_list_prints_them(redis_url: str) -> None:
    fail_raw_ids(redis_url)
    listed = cli(redis_url, "failed", "list")
    printed = [line.split("  ")[1] for line in listed.stdout.splitlines()]
    assert sorted(printed) == sorted(SHOWN), listed.stdout
    assert "with\\nnewline" in printed
    for job_id in printed:
        found = cli(redis_url, "job", job_id)
        assert found.returncode == 0 and "state: failed" in found.stdout, found.stderr
    assert job_status(b"only\xffbyte", connection=redis_url).state == "failed"
    assert job_status("only\\xffbyte", connection=redis_url).state == "failed"
    evil = SHOWN[2]
    forgot = cli(redis_url, "failed", "forget", evil)
    assert forgot.returncode == 0, forgot.stderr
    assert job_status(ODD[2], connection=redis_url) is None
