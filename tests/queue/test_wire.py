"""The hot connection's wire (queue/wire.py): commands packed as redis-py packs them,
replies read from hiredis's reader with redis-py's errors, a connection that fails
mid-reply dropped, and no health-check PING while replies are owed (issue 15)."""

from __future__ import annotations

import pytest
import redis
from redis.connection import Connection
from redis.exceptions import NoScriptError

from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, Reserved, connect
from supervisor_q.queue.wire import Headed, headed, pack_args, pack_evalsha, read, send
from tests.conftest import RedisHandle

KEYS = ["sq:{q}:ready", "sq:{q}:notify"]


def _push(queue: RedisQueue, name: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        built = payloads.build("tests.noop", name, [i], {})
        queue.push(name, built.id, payloads.encode(built))
        ids.append(built.id)
    return ids


@pytest.mark.parametrize("fixed", [0, 2, 5])
def test_a_headed_call_packs_as_redis_py_packs_it(fixed: int) -> None:
    args = [60000, "h\u00e9|1", b"\xff\x00id", 2.5, -7, "", 2**70]
    expected = b"".join(Connection().pack_command("EVALSHA", "a" * 40, len(KEYS), *KEYS,
                                                  *args))
    call = Headed(args)
    call.fixed, call.head = fixed, headed("a" * 40, KEYS, args[:fixed])
    assert pack_evalsha("a" * 40, KEYS, call) == expected
    assert pack_evalsha("a" * 40, KEYS, args) == expected  # a plain list, the same bytes
    for bad in (None, True, object()):
        with pytest.raises(redis.DataError):
            pack_args([bad])


def test_a_new_key_list_at_a_freed_lists_address_is_packed_afresh() -> None:
    first = pack_evalsha("a" * 40, ["sq:{a}:ready"], [1])
    del first
    for n in range(50):  # new lists, some at the address of a freed one
        keys = [f"sq:{{q{n}}}:ready"]
        assert pack_evalsha("a" * 40, keys, [1]) == b"".join(
            Connection().pack_command("EVALSHA", "a" * 40, 1, *keys, 1))


def test_error_replies_are_redis_pys_exceptions_and_keep_the_connection(
        redis_url: str) -> None:
    queue = RedisQueue(connect(redis_url))
    conn = queue._connection()
    send(conn, pack_evalsha("0" * 40, KEYS, []), False)
    with pytest.raises(NoScriptError):
        read(conn)
    send(conn, b"*3\r\n" + pack_args(["EVAL", "return redis.error_reply('BOOM no')", 0]),
         False)
    with pytest.raises(redis.ResponseError, match="BOOM no"):
        read(conn)
    sock = conn._sock
    send(conn, b"*1\r\n" + pack_args(["PING"]), False)
    assert read(conn) in (b"PONG", "PONG") and conn._sock is sock  # still the same one
    queue.close()


def test_a_connection_closed_mid_call_raises_connection_error_and_is_dropped(
        redis_url: str, redis_db: RedisHandle) -> None:
    queue = RedisQueue(connect(redis_url))
    _push(queue, "w", 2)
    queue.reserve("w", default_timeout=30)
    conn = queue._conn
    assert conn is not None
    redis_db.client().client_kill_filter(_id=queue._client_id(conn))
    with pytest.raises(redis.ConnectionError):
        queue.reserve("w", default_timeout=30)
    assert queue._conn is None and conn._sock is None  # dropped: nothing left half read
    _, result = queue.reserve("w", default_timeout=30)  # a new connection
    assert len(result.jobs) == 1
    queue.close()


def test_no_health_check_ping_while_replies_are_owed(redis_url: str,
                                                     redis_db: RedisHandle) -> None:
    """A PING sent while an ack's reply is owed would read that reply as its answer (and
    every later reply one call late): with the health check due, an ack sent without
    waiting and a reserve sent ahead behind it are still read right."""
    queue = RedisQueue(connect(redis_url))  # health_check_interval: 30 s
    ids = _push(queue, "h", 2)
    _, first = queue.reserve("h", default_timeout=30)
    assert [job.id for job in first.jobs] == ids[:1]
    queue.ack_nowait("h", ids[0])
    assert queue._conn is not None and queue._conn.health_check_interval
    queue._conn.next_health_check = 0.0  # due now, as after 30 s idle
    queue.reserve_ahead("h", default_timeout=30)
    ahead = queue.ahead_result()
    assert ahead is not None and [job.id for job in ahead.jobs] == ids[1:]
    assert queue.lost_acks == []
    reserved = redis_db.client().zrange(queue.keys("h").reserved, 0, -1)
    assert reserved == [ids[1].encode()]  # the first job's ack ran; the second is held
    queue.close()


def test_reserved_jobs_are_named_tuples_with_the_stored_bytes(redis_url: str) -> None:
    queue = RedisQueue(connect(redis_url))
    raw_id = "j\udcff"  # a stored id that is not UTF-8 (ids.text's surrogate escape)
    queue.push("t", raw_id, payloads.encode(payloads.build("tests.noop", "t", [], {})))
    _, result = queue.reserve("t", default_timeout=30)
    [job] = result.jobs
    assert type(job) is Reserved and job.queue == "t" and job.id == raw_id
    assert job.attempts == 1 and job.exceptions == 0 and job.waited >= 0.0
    assert job == Reserved("t", raw_id, job.payload, 1, 0, job.waited)
    assert queue.token("t", raw_id).endswith("|1")  # its fencing token is kept
    assert queue.ack("t", raw_id) == 1
    queue.close()
