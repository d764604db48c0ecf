"""The compact payload (version 2) and the full one releases before it wrote (version
1): both decode to the same Payload, the reserve script reads the timeout of both, a
real worker runs an old-format payload, and failed records keep one copy of the
arguments (in the payload) while every reader still shows args and kwargs."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from supervisor_q.jobs.registry import dispatch
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RESERVATION_MARGIN, RedisQueue, connect
from supervisor_q.queue.keys import QueueKeys

# A small job as a release before the compact payload queued it, verbatim.
V1 = ('{"v":1,"timeout":null,"id":"old-1","job":"tests.record","queue":"default",'
      '"args":["from v1"],"kwargs":{},"attempts":0,"tries":null,"backoff":null,'
      '"retry_until":null,"max_exceptions":null,"fail_on_timeout":false,'
      '"dispatched_at":1764000000.123456}')


@pytest.fixture
def queue(redis_url: str) -> RedisQueue:
    return RedisQueue(connect(redis_url))


def test_a_literal_v1_payload_decodes_with_every_field() -> None:
    got = payloads.decode(V1)
    assert got == payloads.Payload(id="old-1", job="tests.record", queue="default",
                                   args=["from v1"], kwargs={},
                                   dispatched_at=1764000000.123456)
    full = ('{"v":1,"timeout":30,"id":"old-2","job":"j","queue":"q","args":[1],'
            '"kwargs":{"k":2},"attempts":0,"tries":3,"backoff":[1,5],"retry_until":1.5e9,'
            '"max_exceptions":2,"fail_on_timeout":true,"dispatched_at":1.4e9,'
            '"extra":{"batch":"b1"}}')
    assert payloads.decode(full) == payloads.Payload(
        id="old-2", job="j", queue="q", args=[1], kwargs={"k": 2}, timeout=30, tries=3,
        backoff=[1, 5], retry_until=1.5e9, max_exceptions=2, fail_on_timeout=True,
        dispatched_at=1.4e9, extra={"batch": "b1"})


def test_the_compact_payload_omits_defaults_and_decodes_to_the_same_payload() -> None:
    small = payloads.build("tests.record", "default", [], {})
    raw = payloads.encode(small)
    assert json.loads(raw).keys() == {"id", "job", "queue", "dispatched_at"}
    assert len(raw) < len(payloads.encode_v1(small)) / 2
    assert payloads.decode(raw) == small == payloads.decode(payloads.encode_v1(small))
    full = payloads.build("j", "q", [0], {"k": None}, timeout=2.5, tries=1, backoff=[0],
                          retry_until=0.0, max_exceptions=0, fail_on_timeout=True,
                          extra={"chain": []})
    raw = payloads.encode(full)
    assert raw.startswith('{"v":2,"timeout":2.5,')  # the head the reserve script reads
    assert payloads.decode(raw) == full  # zeros and empty lists are not defaults


def test_a_payload_without_options_decodes_as_the_general_path_does() -> None:
    """decode() takes a payload of only id, job, queue, args, kwargs, dispatched_at and
    extra (a batch's or a chain's state) on a short path: it gives what the general path
    (a v1 payload) gives, and whatever it does not accept goes to the general path's
    one-line reasons."""
    for args, kwargs, at, extra in (
            ([], {}, 0.0, {}), ([1, "x", None], {"k": [2]}, 1764000000.125, {}),
            ([], {}, 1764000000, {}), ([3], {}, 1.5e9, {"batch": "b1", "chain": []})):
        built = payloads.Payload(id="p-1", job="tests.record", queue="default",
                                 args=args, kwargs=kwargs, dispatched_at=at, extra=extra)
        short, general = payloads.decode(payloads.encode(built)), payloads.decode(
            payloads.encode_v1(built))
        assert short == general == built
        assert type(short.dispatched_at) is float
    # Each payload has its own extra, even one that carries none (code may add to it).
    first, second = (payloads.decode('{"id":"a","job":"j","queue":"q"}') for _ in "12")
    first.extra["chain"] = ["x"]
    assert second.extra == {}
    assert payloads.decode('{"id":"a","job":"j","queue":"q","extra":null}').extra == {}
    for body, reason in (
            ('{"id":"a","job":"j","queue":"q","dispatched_at":true}', "'dispatched_at'"),
            ('{"id":"a","job":"j","queue":"q","dispatched_at":"1"}', "'dispatched_at'"),
            ('{"id":"a","job":"j","queue":"q","args":{}}', "'args' must be a list"),
            ('{"id":"a","job":"j","queue":"q","kwargs":[]}', "'kwargs' must be an object"),
            ('{"id":"a","job":"j","queue":"q","extra":[1]}', "'extra' must be an object"),
            ('{"id":"a","job":"j","queue":"q","extra":"b"}', "'extra' must be an object"),
            ('{"id":5,"job":"j","queue":"q"}', "lacks required string field(s): id"),
            ('{"job":"j","queue":"q"}', "lacks required string field(s): id")):
        with pytest.raises(payloads.MalformedPayload, match=re.escape(reason)):
            payloads.decode(body)


def test_a_chain_or_batch_id_of_the_wrong_shape_is_refused_on_both_paths() -> None:
    """extra's chain, chain_catch and batch id are checked at decode (short path and
    general path alike) against the shape chains.py and batches.py write; other keys of
    extra (middleware state) are not, and a step's job need not be known here."""
    good_step = {"job": "nowhere:known", "args": [1], "kwargs": {}, "queue": "q2",
                 "delay": 0.0}
    batch_step = {"batch": {"items": [{"jobs": [good_step], "catch": None, "queue": None}],
                            "name": "n", "callbacks": {"then": good_step}, "queue": None,
                            "allow_failures": False}}
    for extra in ({"chain": [good_step, batch_step, {"job": "j", "delay": 5}],
                   "chain_catch": good_step},
                  {"batch": "b1", "chain": [good_step]}, {"mw": [1, None, "x"]},
                  # a key a newer release may add: let through (rolling deploys)
                  {"chain": [{**good_step, "other": 1}]}):
        for head in ('{"id":"a"', '{"v":2,"timeout":3,"id":"a"'):
            raw = head + ',"job":"j","queue":"q","extra":' + json.dumps(extra) + "}"
            assert payloads.decode(raw).extra == extra
    bad_step = {"job": "s", "args": "notalist", "kwargs": [], "queue": 5, "delay": "x"}
    for extra, reason in (
            ({"chain": [1, None, "x"]}, "'extra.chain' step 1 must be a job signature"),
            ({"chain": [good_step, bad_step]}, "'extra.chain' step 2 must be a job signature"),
            ({"chain": [{**good_step, "args": "x"}]}, "its args must be a list"),
            ({"chain": [{**good_step, "queue": "no spaces"}]}, "its queue must be a queue name"),
            ({"chain": [{**good_step, "delay": -1}]}, "step 1 must be a job signature"),
            ({"chain": [{**good_step, "delay": 1e308}]}, "step 1 must be a job signature "
             "(job, args, kwargs, queue, delay): its delay must be seconds from 0 to 1e+09"),
            ({"chain": "abc"}, "'extra.chain' must be a list of steps"),
            ({"chain": [{"batch": {"items": [{"jobs": []}]}}]}, "step 1 must be a batch"),
            ({"chain": [batch_step], "batch": "b1"}, "step 1 is a batch in a batch job's"),
            ({"chain": [], "chain_catch": "x"}, "'extra.chain_catch' must be a job signature"),
            ({"batch": [1]}, "'extra.batch' must be a batch id"),
            ({"batch": 12}, "'extra.batch' must be a batch id"),
            ({"batch": ""}, "'extra.batch' must be a batch id")):
        for head in ('{"id":"a"', '{"v":1,"tries":2,"id":"a"'):
            raw = head + ',"job":"j","queue":"q","extra":' + json.dumps(extra) + "}"
            with pytest.raises(payloads.MalformedPayload) as refused:
                payloads.decode(raw)
            shown = str(refused.value)
            assert shown.startswith("payload field 'extra.") and "\n" not in shown
            assert reason in shown, (extra, shown)


def test_a_number_too_large_for_a_float_is_refused_as_nan_is() -> None:
    """1e400 would be inf, which JSON cannot carry (dispatch refuses it): anywhere in a
    payload, str or bytes, short path or general, it is refused in one line."""
    for raw in ('{"id":"a","job":"j","queue":"q","args":[1e400]}',
                '{"id":"a","job":"j","queue":"q","kwargs":{"k":[{"x":-1E+309}]}}',
                b'{"id":"a","job":"j","queue":"q","args":[1e400]}',
                ' {"v":1,"timeout":1e999,"id":"a","job":"j","queue":"q"} ',
                '{"id":"a","job":"j","queue":"q","extra":{"mw":1e400}}'):
        with pytest.raises(payloads.MalformedPayload) as refused:
            payloads.decode(raw)
        assert str(refused.value) == "payload is not valid JSON: number out of range"
    kept = payloads.decode('{"id":"a","job":"j","queue":"q","args":[1.5e308,1e-400,-0.0,2]}')
    assert kept.args == [1.5e308, 0.0, -0.0, 2]


def test_retry_counts_out_of_range_and_integers_too_long_are_refused_in_one_line() -> None:
    head = '{"id":"a","job":"j","queue":"q",'
    for body, reason in (
            ('"tries":-1}', "payload field 'tries' must be a whole number >= 1"),
            ('"tries":0}', "payload field 'tries' must be a whole number >= 1"),
            ('"max_exceptions":-1}', "payload field 'max_exceptions' must be a whole number >= 0"),
            ('"args":[' + "9" * 5000 + "]}", "payload is not valid JSON: integer too long"),
            ('"kwargs":{"n":-' + "1" * 4301 + "}}", "payload is not valid JSON: integer too long")):
        for raw in (head + body, (head + body).encode()):
            with pytest.raises(payloads.MalformedPayload) as refused:
                payloads.decode(raw)
            assert str(refused.value) == reason
    kept = payloads.decode(head + '"tries":1,"max_exceptions":0,"args":[' + "9" * 4300 + "]}")
    assert (kept.tries, kept.max_exceptions, kept.args) == (1, 0, [int("9" * 4300)])


def test_a_payload_of_a_newer_version_is_read_as_far_as_its_keys_go() -> None:
    """Not refused: a rolling deploy may queue a newer producer's payloads before every
    worker is replaced, and payload versions only leave keys out, never rename them
    (README, "Payload versions"); refusing would fail those jobs in the old workers."""
    got = payloads.decode('{"v":99,"timeout":5,"id":"a","job":"j","queue":"q","args":[1]}')
    assert (got.id, got.timeout, got.args) == ("a", 5, [1])


def test_the_compact_payload_keeps_the_keys_a_v1_reader_takes() -> None:
    """Rolling deploys: a version-1 worker reads a version-2 payload because v2 only
    leaves keys out (v1's decode took a missing one as its default) and never renames.
    The keys it writes must be a subset of v1's."""
    full = payloads.build("j", "q", [1], {"k": 1}, timeout=3, tries=2, backoff=[1],
                          retry_until=9e9, max_exceptions=1, fail_on_timeout=True,
                          extra={"batch": "b"})
    v1_keys = set(json.loads(payloads.encode_v1(full)))
    assert set(json.loads(payloads.encode(full))) <= v1_keys


@pytest.mark.parametrize("timeout", [None, 40])
def test_reserve_reads_the_timeout_of_both_forms(queue: RedisQueue,
                                                 timeout: int | None) -> None:
    keys = QueueKeys("default")
    for n, encode in enumerate((payloads.encode_v1, payloads.encode)):
        built = payloads.build("tests.noop", "default", [], {}, timeout=timeout,
                               job_id=f"t{n}")
        queue.push("default", built.id, encode(built))
        queue.reserve("default", default_timeout=7)
        seconds, micros = queue.client.time()
        left = queue.client.zscore(keys.reserved, built.id) / 1000 - seconds - micros / 1e6
        expected = (timeout or 7) + RESERVATION_MARGIN
        assert expected - 2 < left <= expected, (encode.__name__, left)


def test_a_worker_runs_an_old_format_payload(redis_url: str, queue: RedisQueue) -> None:
    queue.push("default", "old-1", V1)
    done = subprocess.run(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work", "--quiet",
         "--queue", "default", "--import", "tests.jobmods.basic", "--stop-when-empty"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ran = [json.loads(r) for r in queue.client.lrange("results", 0, -1)]
    assert [(r["id"], r["value"]) for r in ran] == [("old-1", "from v1")]
    assert queue.failed_records() == []


def test_a_failed_record_stores_the_arguments_once(redis_url: str,
                                                   queue: RedisQueue) -> None:
    import tests.jobmods.basic  # noqa: F401  (registers tests.boom)

    job_id = dispatch("tests.boom", "x", queue="default")
    done = subprocess.run(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "work", "--quiet",
         "--queue", "default", "--import", "tests.jobmods.basic", "--stop-when-empty"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    stored = json.loads(queue.client.hget(QueueKeys("default").failed_records, job_id))
    assert "args" not in stored and "kwargs" not in stored
    assert json.loads(stored["payload"])["args"] == ["x"]
    assert queue.find_failed(job_id)["args"] == ["x"]
    [row] = queue.failed_page(None, 0, 10)[0]
    assert (row["args"], row["kwargs"]) == (["x"], {})
    listed = subprocess.run(
        [sys.executable, "-m", "supervisor_q", "--redis-url", redis_url, "failed", "list",
         "--json"], capture_output=True, text=True, check=True)
    [entry] = json.loads(listed.stdout)
    assert (entry["args"], entry["kwargs"]) == (["x"], {})


def test_a_failed_record_with_its_own_arguments_keeps_them(queue: RedisQueue) -> None:
    """Records written by an older worker carry args and kwargs: shown as stored."""
    from supervisor_q.queue.failed import record_json, with_arguments

    old = {"id": "o", "job": "j", "queue": "default", "args": [1], "kwargs": {"a": 1},
           "payload": V1, "attempts": 1, "reason": "r", "failed_at": 1.0}
    queue.client.zadd(QueueKeys("default").failed, {"o": 1000})
    queue.client.hset(QueueKeys("default").failed_records, "o", record_json(old))
    queue.index_queue("default")
    assert queue.find_failed("o")["args"] == [1]
    compact = payloads.encode(payloads.build("j", "default", [], {}))
    older = {"payload": compact, "args": None, "kwargs": None}  # an older worker's record
    assert with_arguments(older) == {"payload": compact, "args": [], "kwargs": {}}
    assert with_arguments({"payload": "not json"}) == {"payload": "not json", "args": None,
                                                       "kwargs": None}


def test_the_job_name_hint_is_the_top_level_name_or_none() -> None:
    """job_name_of (the worker's hint before decode) reads the payload's own "job" key:
    an id or argument holding the same text cannot stand in for it."""
    build, encode, encode_v1 = payloads.build, payloads.encode, payloads.encode_v1
    job_name_of = payloads.job_name_of
    tricky = build("app.real", "q", [{"job": "app.fake"}], {"job": "app.fake"},
                   job_id='x","job":"app.fake')
    assert job_name_of(encode(tricky)) == "app.real"
    assert job_name_of(encode_v1(tricky)) == "app.real"
    assert job_name_of(encode(build("caf\u00e9.\u00e9t\u00e9", "q", [], {}))) is None  # escaped
    assert job_name_of('{"id": "a", "job": "spaced"}') is None  # not encode()'s form


@pytest.mark.parametrize("around", ["", " ", "\n", "\t "])
def test_decode_reads_a_payload_with_or_without_whitespace_around_it(around: str) -> None:
    """decode() reads a payload through the JSON scanner alone when nothing surrounds
    it, else through the whole decoder: the same payload either way."""
    raw = payloads.encode(payloads.build("app.job", "q", [1, "two"], {"k": None}))
    assert payloads.decode(around + raw + around) == payloads.decode(raw)


@pytest.mark.parametrize(("raw", "reason"), [
    ('{"id":"a","job":"j","queue":"q"} x', "Extra data"),
    ('{"id":"a","job":"j","queue":"q"}{}', "Extra data"),
    ('{"id":"a","job":"j","queue":"q","args":[NaN]}', "NaN is not JSON"),
    ('{"id":"a","job":', "Expecting value"),
    ("", "Expecting value"),
    ("[" * 100_000, "nested too deeply"),
])
def test_decode_refuses_what_is_not_one_json_value(raw: str, reason: str) -> None:
    with pytest.raises(payloads.MalformedPayload, match=reason):
        payloads.decode(raw)
