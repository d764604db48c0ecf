"""The bulk fast road (jobs/bulkbuild.py): byte for byte the payload a single dispatch
writes, ids of the same form, and the jobs that must not take it (signed ones)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator

import pytest

from supervisor_q.jobs import bulkbuild, dispatching, encryption
from supervisor_q.jobs.registry import Registry, dispatch_many, job, publish_registry
from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.keys import QueueKeys
from supervisor_q.testing import fake_queue
from supervisor_q.workflows.batches import batch

REG = Registry()
NOW = 1_700_000_123.4567891


@job(name="tests.bb.plain", queue="bbq", registry=REG)
def plain(*args: object, **kwargs: object) -> None:
    pass


@job(name="tests.bb.full", queue="bbq", registry=REG, timeout=7.5, tries=3,
     backoff=[1, 5], retry_until=1_800_000_000.25, max_exceptions=0, fail_on_timeout=True)
def full(*args: object, **kwargs: object) -> None:
    pass


@job(name="tests.bb.for", queue="bbq", registry=REG, timeout=3, retry_for=60)
def retry_for(*args: object, **kwargs: object) -> None:
    pass


@job(name="tests.bb.callable", queue="bbq", registry=REG, retry_until=lambda: NOW + 9)
def retry_callable(*args: object, **kwargs: object) -> None:
    pass


CALLS = [((), {}), ((1, "two", [3.5]), {}), ([], {"k": "\u00e9\u2603", "n": None}),
         ((True, {"x": [1, 2]}), {"z": 1, "a": 2})]


@pytest.mark.parametrize("which", [plain, full, retry_for, retry_callable])
@pytest.mark.parametrize("extra", [None, {"batch": "b-1", "chain": []}])
def test_a_template_writes_the_bytes_of_a_single_dispatch(
        which, extra: dict | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW)
    for queue in (None, "other"):
        made = bulkbuild.template(which.name, queue, which.options)
        for args, kwargs in CALLS:
            built = which.payload(args, kwargs, queue=queue, extra=extra)
            assert made.render(built.id, args, kwargs, extra) == payloads.encode(built)
            if extra:  # given serialised once for many jobs, as batch dispatch does
                assert made.render(built.id, args, kwargs, payloads.to_json(extra, "b")) \
                    == payloads.encode(built)


def test_a_job_known_by_name_only_takes_every_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW)
    made = bulkbuild.template("elsewhere:job", None, None)
    built = payloads.build("elsewhere:job", payloads.DEFAULT_QUEUE, [1], {"a": 2})
    assert made.render(built.id, [1], {"a": 2}) == payloads.encode(built)
    with pytest.raises(payloads.NotSerialisable, match="elsewhere:job"):
        made.render("x", [object()], {})
    with pytest.raises(ValueError):
        bulkbuild.template("j", "bad queue name with spaces", None)


def test_ids_are_uuid4_text_like_a_single_dispatch() -> None:
    ids = bulkbuild.job_ids(50)
    many = [next(ids) for _ in range(500)]  # ten reads
    assert len(set(many)) == 500
    for made in many:
        parsed = uuid.UUID(made)
        assert str(parsed) == made and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    singles = [payloads.new_job_id() for _ in range(500)]
    assert len(set(singles)) == 500
    for made in singles:
        parsed = uuid.UUID(made)
        assert str(parsed) == made and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


@pytest.fixture
def queue(redis_url: str) -> Iterator[RedisQueue]:
    dispatching._queues.clear()
    yield dispatching.queue_for(redis_url)
    dispatching._queues.clear()


def stored(queue: RedisQueue, job_id: str) -> payloads.Payload:
    return payloads.decode(queue.client.hget(QueueKeys("bbq").payloads, job_id))


def test_dispatch_many_and_batch_store_what_dispatch_stores(queue: RedisQueue) -> None:
    publish_registry(queue, REG)  # the batch finds the job by name: as its workers declared
    one = full.dispatch(1, k="v")
    [many] = dispatch_many(full, [(1,)])
    by_name = dispatch_many("tests.bb.full", [{"k": "v"}], registry=REG)
    b = batch([full.s(1, k="v")]).dispatch()
    [in_batch] = [i.decode() for i in queue.client.lrange(QueueKeys("bbq").ready, 0, -1)
                  if i.decode() not in (one, many, *by_name)]
    single = stored(queue, str(one))
    for job_id, args, kwargs, extra in ((many, [1], {}, {}), (by_name[0], [], {"k": "v"}, {}),
                                        (in_batch, [1], {"k": "v"},
                                         {"batch": b.id})):  # no empty chain: a lone job
        got = stored(queue, str(job_id))
        assert abs(got.dispatched_at - single.dispatched_at) < 60
        assert got == dataclasses.replace(single, id=job_id, args=args, kwargs=kwargs,
                                          extra=extra, dispatched_at=got.dispatched_at)


def test_with_a_signing_key_every_job_is_signed(queue: RedisQueue,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(encryption.SIGNING_ENV, "k" * 32)
    ids = plain.dispatch_many([(n,) for n in range(3)])
    for job_id in ids:
        got = stored(queue, str(job_id))
        assert isinstance(got.extra.get("sig"), str)
        assert encryption.open_payload(got).args == got.args


@pytest.mark.parametrize("which", [plain, full, retry_for])
def test_a_single_dispatch_stores_the_bytes_its_payload_encodes_to(
        which, queue: RedisQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW)
    job_id = which.dispatch(1, "x", k=[2])
    raw = queue.client.hget(QueueKeys("bbq").payloads, job_id).decode()
    want = dataclasses.replace(which.payload((1, "x"), {"k": [2]}), id=job_id)
    assert raw == payloads.encode(want)


def test_the_fake_still_sees_each_single_dispatch() -> None:
    with fake_queue() as fake:
        job_id = plain.dispatch(5)
    [recorded] = fake.of(plain)
    assert recorded.payload.id == job_id and recorded.args == [5]
