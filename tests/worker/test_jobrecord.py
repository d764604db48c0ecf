"""The done record of a plain job, written by done_entry's f-string: the bytes
json.dumps writes for the same fields, whatever the name, times, attempts or host."""

from __future__ import annotations

import json

import pytest

from supervisor_q import procid
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import Reserved
from supervisor_q.worker import jobrecord

NAMES = ["app.send", 'quote"and\\back', "caf\u00e9 \u2603 \U0001f600", "ctl\x00\x1f\x7f",
         "\udcff\udc80raw", "</script>", ""]
TIMES = [1_795_642_505.538, 1_795_642_505.538, 1_795_642_505.539, 0.0, -0.0, 0.1, 1e-7,
         1e22, 123.0, 1_795_642_505.5384998]


def _general(record: str, decoded: payloads.Payload, job: Reserved, started: float) -> str:
    ended = json.loads(record)["ended_at"]  # a float's repr reads back to the same float
    return json.dumps({"job": decoded.job, "attempts": job.attempts,
                       "dispatched_at": decoded.dispatched_at, "started_at": started,
                       "ended_at": ended, "host": jobrecord._host, "pid": procid.pid()},
                      separators=(",", ":"))


@pytest.mark.parametrize("host", ["vm", "h\u00f4te\"\\"])
def test_a_plain_done_record_is_json_dumps_bytes_for_hostile_values(monkeypatch, host) -> None:
    monkeypatch.setattr(jobrecord, "_host", host)
    for i, name in enumerate(NAMES * 2):
        for at in TIMES:  # the same time twice in a row: the kept repr
            built = payloads.build(name, "q", [], {})
            decoded = payloads.decode(payloads.encode(built))
            decoded = payloads.Payload(decoded.id, decoded.job, "q", dispatched_at=at)
            job = Reserved("q", decoded.id, "{}", 1 + i * 1_000_003, 0, 0.0)
            started = at + 0.25 if at else 1_700_000_000.125
            done = jobrecord.done_entry(job, decoded, started, None, 60, None)
            assert isinstance(done, jobrecord.Done) and type(done) is jobrecord.Done
            assert done == (decoded.id, 60_000, done.record) and done.keep_ms == 60_000
            assert done.record == _general(done.record, decoded, job, started), (name, at)


def test_nothing_kept_is_the_bare_id_and_a_longer_result_keep_wins() -> None:
    built = payloads.build("app.send", "q", [], {})
    decoded = payloads.decode(payloads.encode(built))
    job = Reserved("q", decoded.id, "{}", 1, 0, 0.0)
    assert jobrecord.done_entry(job, decoded, 1.0, None, 0, None) == decoded.id
    kept = jobrecord.done_entry(job, decoded, 1.0, 7, 60, 120)
    assert isinstance(kept, jobrecord.Done) and kept.keep_ms == 120_000
    assert json.loads(kept.record)["job"] == "app.send"
