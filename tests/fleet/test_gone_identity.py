"""A gone master keeps its host, pid, version and start in `status --all` (JSON and
text), so the operator can tell which one died; one that left in order is not listed."""

from __future__ import annotations

import json
import subprocess
import sys

import redis

from supervisor_q.fleet.registry import beat, claim, leave, members, stale, who_key
from tests.helpers import wait_until


def status_all(redis_url: str, *extra: str) -> str:
    done = subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                           "status", "--all", *extra], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_claimed_master_keeps_host_pid_and_start(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    status = {"host": "web-7", "pid": 4242, "version": "9.9", "started_at": 1700000000.5,
              "master": {}, "programs": [{"name": "big"}]}
    assert beat(client, "dead1", status, [], 0.2)  # a 0.2 s lease: it runs out at once
    assert beat(client, "left1", {**status, "pid": 1}, [], 30.0)
    leave(client, "left1")  # an orderly exit: no who record left behind
    assert client.exists(who_key("left1")) == 0
    wait_until(lambda: "dead1" in stale(client, 0.2), timeout=5, message="lease ran out")
    assert claim(client, "dead1") == []
    [entry] = json.loads(status_all(redis_url, "--json"))["masters"]
    assert entry["id"] == "dead1" and entry["state"] == "gone"
    assert (entry["host"], entry["pid"], entry["version"], entry["started_at"]) == (
        "web-7", 4242, "9.9", 1700000000.5)
    assert "programs" not in entry  # only who it was, not its last status
    [line] = status_all(redis_url).splitlines()
    assert line.startswith("master dead1 GONE (host web-7, pid 4242, started 2023-11-")


def test_an_expired_heartbeat_not_yet_claimed_also_keeps_who_it_was(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert beat(client, "quiet", {"host": "h2", "pid": 77, "started_at": 1.0}, [], 0.2)
    wait_until(lambda: [m for m in members(client) if m.state == "gone"], timeout=5,
               message="the heartbeat expired")
    [member] = members(client)
    assert member.as_json()["pid"] == 77 and member.as_json()["host"] == "h2"
    client.set(who_key("quiet"), "[not a mapping]")  # hostile or foreign: ignored
    assert members(client)[0].as_json() == {"id": "quiet", "state": "gone",
                                            "seen_ms": members(client)[0].seen_ms}
