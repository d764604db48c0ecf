"""The hot connection's bytes (hotpath.py): EVALSHA packed to the protocol's bytes with
its constant head packed once, sent with one sendall, and replies read from hiredis's
reader without redis-py's per-command layers, with redis-py's semantics kept:

- a write or read that fails disconnects and raises redis-py's TimeoutError or
  ConnectionError (any other exception, e.g. KeyboardInterrupt, disconnects too: a half
  read reply must never be read as the next one);
- an error reply is raised as the exception redis-py's parser maps it to (NoScriptError,
  ReadOnlyError, MOVED/ASK..., BusyLoadingError, which is a ConnectionError and
  disconnects); on a Sentinel-managed primary a READONLY reply disconnects and raises
  ConnectionError, as SentinelManagedConnection.read_response does;
- the connection's health check (a PING after health_check_interval idle seconds) runs
  before a write only when no reply is owed on it: a PING then would read an owed reply
  as its answer.

A connection whose parser is not hiredis's is read through redis-py's read_response.
Imports nothing from the package.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import redis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _HiredisParser
from redis.connection import Connection
from redis.exceptions import ReadOnlyError
from redis.sentinel import SentinelManagedConnection

# EVALSHA sha numkeys keys... per (sha, keys), in the protocol's bytes: a reserve names 13
# keys, and packing them anew for every job cost more than the rest of the command. The
# key list itself is kept beside its bytes: a list is looked up by identity (RedisQueue
# keeps one per queue), and a freed list's id reused by another is then not mistaken.
_heads: dict[tuple[str, int], tuple[list[str], int, bytes]] = {}
HEADS_KEPT = 256  # key lists come from a few queues and scripts


def _other(value: Any) -> bytes:
    """An argument that is neither str, bytes nor int, as redis-py's encoder takes it."""
    if type(value) is float:
        return repr(value).encode()
    raise redis.DataError(f"Invalid input of type: {type(value).__name__!r}")


def pack_args(args: Iterable[Any]) -> bytes:
    """Arguments as protocol bulk strings, as redis-py encodes them (str as UTF-8, int
    and float by repr; bool, None and anything else raise DataError)."""
    out = []
    append = out.append
    for value in args:
        kind = type(value)
        if kind is str:
            value = value.encode()
        elif kind is int:
            value = b"%d" % value
        elif kind is not bytes:
            value = _other(value)
        append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(out)


def _head(sha: str, keys: list[str]) -> tuple[int, bytes]:
    key = (sha, id(keys))
    found = _heads.get(key)
    if found is None or found[0] is not keys:
        if len(_heads) >= HEADS_KEPT:
            _heads.clear()
        found = _heads[key] = (keys, 3 + len(keys),
                               pack_args(["EVALSHA", sha, len(keys), *keys]))
    return found[1], found[2]


class Headed(list):
    """A call's arguments whose first `fixed` ones are packed already, after the command's
    head, in `head` (RedisQueue's reserve: its six constant arguments, packed once per
    queue and settings). Otherwise the list of all the arguments, as any other call's."""

    __slots__ = ("acks", "fixed", "head")
    fixed: int
    head: bytes
    acks: Sequence[Any]  # what the arguments after the fixed ones ack (the caller's)


def pack_evalsha(sha: str, keys: list[str], args: list) -> bytes:
    """The command EVALSHA sha len(keys) *keys *args, ready to send."""
    if type(args) is Headed:
        return b"*%d\r\n%s%s" % (3 + len(keys) + len(args), args.head,
                                 pack_args(args[args.fixed:]))
    count, head = _head(sha, keys)
    return b"*%d\r\n%s%s" % (count + len(args), head, pack_args(args))


def headed(sha: str, keys: list[str], fixed: list) -> bytes:
    """The packed head of a Headed: EVALSHA sha numkeys *keys *fixed."""
    return _head(sha, keys)[1] + pack_args(fixed)


def send(conn: Connection, data: bytes, owed: bool) -> None:
    """Write data (packed commands) to conn; owed: replies are still to be read on it."""
    if conn._sock is None:
        conn.connect()
    if (not owed and conn.health_check_interval
            and time.monotonic() > conn.next_health_check):
        conn.check_health()
    try:
        conn._sock.sendall(data)
    except BaseException as exc:
        _dropped(conn, exc, "writing to")


def read(conn: Connection) -> Any:
    """The next reply on conn, an error reply raised; a RESP3 push message read on the way
    goes to the parser's push handler, as in redis-py."""
    parser = conn._parser
    if type(parser) is not _HiredisParser:
        return conn.read_response()
    reader = parser._reader
    push = getattr(parser, "_hiredis_PushNotificationType", None)  # redis-py >= 5.1
    try:
        if reader is None or conn._sock is None:
            raise redis.ConnectionError("Connection closed by server.")
        reply = reader.gets()
        while reply is NOT_ENOUGH_DATA or (push is not None and type(reply) is push):
            if reply is NOT_ENOUGH_DATA:  # as parser.read_from_socket() reads, inline
                buffer = parser._buffer
                size = conn._sock.recv_into(buffer)
                if not size:
                    raise redis.ConnectionError("Connection closed by server.")
                reader.feed(buffer, 0, size)
            else:
                parser.handle_push_response(reply)
            reply = reader.gets()
    except BaseException as exc:
        _dropped(conn, exc, "reading from")
    if conn.health_check_interval:
        conn.next_health_check = time.monotonic() + conn.health_check_interval
    if isinstance(reply, Exception):
        _raise(conn, reply)
    return reply


def _dropped(conn: Connection, exc: BaseException, doing: str) -> NoReturn:
    """A write or read (doing: "writing to", "reading from") failed: conn is dropped (a
    half-sent call or half-read reply must never meet the next one) and exc raised as
    redis-py raises it."""
    conn.disconnect()
    if isinstance(exc, TimeoutError):
        raise redis.TimeoutError(f"Timeout {doing} socket") from None
    if isinstance(exc, OSError):
        raise redis.ConnectionError(f"Error while {doing} socket: {exc}") from None
    raise exc


def _raise(conn: Connection, error: Exception) -> None:
    if isinstance(error, redis.ConnectionError):  # e.g. LOADING: BusyLoadingError
        conn.disconnect()
    elif (isinstance(error, ReadOnlyError) and isinstance(conn, SentinelManagedConnection)
          and conn.connection_pool.is_master):
        conn.disconnect()
        raise redis.ConnectionError("The previous master is now a slave")
    raise error
