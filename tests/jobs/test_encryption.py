"""Encrypted and signed payloads with real workers: unreadable in Redis yet run; a worker
without the key fails them clearly; a tampered or unsigned payload is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from supervisor_q.jobs import encryption
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from tests.helpers import wait_until
from tests.jobmods.flows import secret, step
from tests.workers import results, running

KEY = encryption.generate_key()


def stored(redis_url: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    return [v.decode() for v in client.hvals("sq:{default}:payloads")]


def failed_reasons(redis_url: str) -> list[str]:
    return [r["reason"] for r in RedisQueue(connect(redis_url)).failed_records()]


def test_encrypted_payload_is_unreadable_in_redis_and_runs(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(encryption.ENCRYPTION_ENV, KEY)
    secret.dispatch("hunter2")
    [raw] = stored(redis_url)
    assert "hunter2" not in raw
    assert json.loads(raw)["job"] == "flows.secret", "the name stays readable"
    with running(redis_url, 1):
        wait_until(lambda: results(redis_url, "secret"), timeout=10)
    assert results(redis_url, "secret")[0]["value"] == "hunter2"


def test_worker_without_the_key_fails_the_job_clearly(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(encryption.ENCRYPTION_ENV, KEY)
    secret.dispatch("hunter2")
    env = {k: v for k, v in os.environ.items() if k != encryption.ENCRYPTION_ENV}
    with running(redis_url, 1, env=env):
        wait_until(lambda: failed_reasons(redis_url), timeout=10)
    [reason] = failed_reasons(redis_url)
    assert "encrypted" in reason and encryption.ENCRYPTION_ENV in reason
    assert results(redis_url, "secret") == []


def test_wrong_key_is_refused(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(encryption.ENCRYPTION_ENV, KEY)
    secret.dispatch("hunter2")
    env = {**os.environ, encryption.ENCRYPTION_ENV: encryption.generate_key()}
    with running(redis_url, 1, env=env):
        wait_until(lambda: failed_reasons(redis_url), timeout=10)
    assert "cannot decrypt" in failed_reasons(redis_url)[0]


def test_signed_payloads_run_and_tampered_or_unsigned_ones_are_refused(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(encryption.SIGNING_ENV, "s3cret-signing-key")
    step.dispatch("good")
    tampered_id = step.dispatch("pay 10")
    client = redis.Redis.from_url(redis_url)
    raw = client.hget("sq:{default}:payloads", tampered_id).decode()
    client.hset("sq:{default}:payloads", tampered_id, raw.replace("pay 10", "pay 9999"))
    unsigned = payloads.build("flows.step", "default", ["unsigned"], {})
    RedisQueue(connect(redis_url)).push("default", unsigned.id, payloads.encode(unsigned))
    with running(redis_url, 1):
        wait_until(lambda: len(failed_reasons(redis_url)) == 2, timeout=10)
        wait_until(lambda: results(redis_url, "step"), timeout=5)
    assert [r["value"] for r in results(redis_url, "step")] == ["good"]
    assert all("signature is missing or invalid" in r for r in failed_reasons(redis_url))


def test_signing_keys_rotate_newest_first(redis_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`new, old`: payloads are signed with new, and both new's and old's are accepted;
    a worker that knows only new refuses what old signed."""
    monkeypatch.setenv(encryption.SIGNING_ENV, "old-key")
    step.dispatch("signed by old")
    monkeypatch.setenv(encryption.SIGNING_ENV, " new-key , old-key")
    step.dispatch("signed by new")
    rotating = {**os.environ, encryption.SIGNING_ENV: "new-key,old-key"}
    with running(redis_url, 1, env=rotating):
        wait_until(lambda: len(results(redis_url, "step")) == 2, timeout=10)
    assert sorted(r["value"] for r in results(redis_url, "step")) == [
        "signed by new", "signed by old"]
    assert failed_reasons(redis_url) == []
    monkeypatch.setenv(encryption.SIGNING_ENV, "old-key")
    step.dispatch("old after the rotation")
    with running(redis_url, 1, env={**os.environ, encryption.SIGNING_ENV: "new-key"}):
        wait_until(lambda: failed_reasons(redis_url), timeout=10)
    assert "signature is missing or invalid" in failed_reasons(redis_url)[0]


def test_a_bad_encryption_key_is_said_once_at_the_workers_start(redis_url: str) -> None:
    env = {**os.environ, encryption.ENCRYPTION_ENV: "not-a-fernet-key-s3cret"}
    done = subprocess.run(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work", "--queue",
         "empty-q", "--import", "tests.jobmods.flows", "--stop-when-empty"],
        env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "Fernet key" in line]
    assert len(said) == 1 and "encrypted jobs will fail until it is set right" in said[0]
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
