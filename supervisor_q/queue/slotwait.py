"""The idle wait of a worker whose queues live in several cluster slots.

One BLPOP can only watch keys of one slot. So an idle worker blocks once per slot,
all at the same time: its first queue's slot on the hot-path connection (BLPOP with
the first queue's RESERVE pipelined behind it, as on a single Redis), and every other
slot on a connection of its own to the node that serves it (BLPOP only). One poll()
watches every socket and the signal pipe, so a job in any queue wakes the worker at
once: no polling, no slice. Whichever wait ends first, the others are ended with
CLIENT UNBLOCK, every reply is read (a connection never carries a reply nobody reads),
the woken queues are reserved from in priority order, and a wake-up token taken from
a queue the worker did not reserve from is put back for the next idle worker.
Imports cluster (the node connections); backend imports this module.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from redis.cluster import key_slot
from redis.connection import Connection
from redis.exceptions import NoScriptError

from supervisor_q.queue.cluster import NodeConnections

if TYPE_CHECKING:  # backend imports this module; the type only
    from supervisor_q.queue.backend import RedisQueue, ReserveResult


def wait_in_slots(rq: RedisQueue, conn: Connection, groups: list[list[str]], timeout: float,
                  args: list, wake_fd: int | None,
                  leave: Callable[[], bool] | None) -> ReserveResult | None:
    """RedisQueue.wait_and_reserve for queues in several slots (groups: slot_groups);
    conn is the hot-path connection to the first queue's node. Errors propagate (the
    caller drops every connection)."""
    first = groups[0][0]
    keys = rq._job_keys(first)
    client_id, node = rq._client_id(conn), rq._node_client
    conn.send_packed_command(conn.pack_commands([
        ("BLPOP", *[rq._notify(q) for q in groups[0]], max(timeout, 0.01)),
        ("EVALSHA", rq._reserve.sha, len(keys), *keys, *args)]))
    assert rq._slots is not None
    waits = rq._slots.send(groups[1:], timeout, rq._notify)
    ended = await_sockets([conn._sock.fileno(), *[w.fd for w in waits]], timeout,
                          wake_fd, leave)
    if conn._sock.fileno() not in ended:
        unblock(node, client_id)
    woken = rq._slots.finish(waits, ended)
    token = conn.read_response()
    if token and _text(token[0]) != rq._notify(first):
        woken.append(_text(token[0]))  # another queue of the first slot
    try:
        raw = conn.read_response()
    except NoScriptError:
        rq.client.script_load(rq._reserve.script)
        raw = None
    result = None if raw is None else rq._parse_reserve(first, raw)[1]
    return _reserve_woken(rq, [q for g in groups for q in g if rq._notify(q) in woken],
                          result, args, leave)


def _reserve_woken(rq: RedisQueue, woken: list[str], result: ReserveResult | None,
                   args: list, leave: Callable[[], bool] | None) -> ReserveResult | None:
    """Unless the first queue's reserve found a job (or the worker is leaving), reserve
    from the woken queues in priority order; give back the tokens of the others."""
    if not (result is not None and result.jobs) and not (leave is not None and leave()):
        while woken:
            queue = woken.pop(0)
            _, result = rq.reserve(queue, default_timeout=args[0] / 1000, count=args[2])
            if result.jobs:
                break
    for queue in woken:  # a hint another idle worker may need
        try:
            rq.client.rpush(rq._notify(queue), "1")
        except redis.RedisError:
            pass  # that worker then sees the job at the end of its own wait
    return result


def slot_groups(queues: Sequence[str], notify_of: Callable[[str], str]) -> list[list[str]]:
    """The queues grouped by the slot of their wake-up key, in priority order: the
    first group holds queues[0] (and every queue sharing its slot)."""
    groups: dict[int, list[str]] = {}
    for queue in queues:
        groups.setdefault(key_slot(notify_of(queue).encode()), []).append(queue)
    return list(groups.values())


@dataclass
class SlotWait:
    """One BLPOP sent on a slot's own connection, its reply not read yet."""

    conn: Connection
    node: redis.Redis  # that node's client, for CLIENT UNBLOCK
    client_id: int | None
    queues: list[str]

    @property
    def fd(self) -> int:
        return self.conn._sock.fileno()


class SlotWaits:
    """The waiting connections of the slots other than the first queue's: one per slot,
    made lazily, remade when the slot moves to another node or after a fork."""

    def __init__(self, nodes: NodeConnections) -> None:
        self.nodes = nodes
        self.conns: dict[int, tuple[str, Connection, int | None]] = {}  # slot -> name, conn, id
        self.pid = os.getpid()

    def send(self, groups: list[list[str]], timeout: float,
             notify_of: Callable[[str], str]) -> list[SlotWait]:
        """Send one BLPOP per group (each over the group's wake-up keys)."""
        if self.pid != os.getpid():
            self.conns, self.pid = {}, os.getpid()
        waits = []
        for group in groups:
            keys = [notify_of(q) for q in group]
            conn, node, client_id = self._connection(keys[0])
            conn.send_command("BLPOP", *keys, max(timeout, 0.01))
            waits.append(SlotWait(conn, node, client_id, group))
        return waits

    def _connection(self, key: str) -> tuple[Connection, redis.Redis, int | None]:
        slot = key_slot(key.encode())
        node = self.nodes.client.get_node_from_key(key)
        found = self.conns.get(slot)
        if found is not None and found[0] == node.name and found[1]._sock is not None:
            return found[1], node.redis_connection, found[2]
        if found is not None:
            found[1].disconnect()
        conn = node.redis_connection.connection_pool.make_connection()
        conn.connect()
        try:
            conn.send_command("CLIENT", "ID")
            client_id: int | None = int(conn.read_response())
        except redis.ResponseError:
            client_id = None
        self.conns[slot] = (node.name, conn, client_id)
        return conn, node.redis_connection, client_id

    def finish(self, waits: list[SlotWait], ended: set[int]) -> list[str]:
        """End the waits whose socket is not in ended (CLIENT UNBLOCK), read every reply,
        and return the wake-up keys whose token was taken."""
        for wait in waits:
            if wait.fd not in ended:
                unblock(wait.node, wait.client_id)
        woken = []
        for wait in waits:
            reply = wait.conn.read_response()
            if reply:
                woken.append(_text(reply[0]))  # the wake-up key that had a token
        return woken

    def drop(self) -> None:
        for _, conn, _ in self.conns.values():
            conn.disconnect()
        self.conns = {}


def unblock(node: redis.Redis, client_id: int | None) -> None:
    """End another connection's BLPOP now (it then replies nil); without a client id
    (the server refused CLIENT ID) the wait ends at its own timeout."""
    if client_id is None:
        return
    try:
        node.client_unblock(client_id)
    except redis.RedisError:
        pass  # the wait then ends at its own timeout


def await_sockets(fds: Sequence[int], timeout: float, wake_fd: int | None,
                  leave: Callable[[], bool] | None) -> set[int]:
    """Wait until a reply arrives on any of fds (returned: the readable ones), up to
    timeout + 1 s, or until a signal byte on wake_fd after which leave() is true
    (returned: empty set). Signal handlers only record; nothing is raised here."""
    poller = select.poll()  # not select.select: a job may have pushed fds past 1024
    for fd in fds:
        poller.register(fd, select.POLLIN)
    if wake_fd is not None:
        poller.register(wake_fd, select.POLLIN)
    give_up = time.monotonic() + timeout + 1.0
    while True:
        left = give_up - time.monotonic()
        if left <= 0:
            return set()
        ready = {fd for fd, _ in poller.poll(left * 1000)}
        if wake_fd is not None and wake_fd in ready:
            drain(wake_fd)
            ready.discard(wake_fd)
            if not ready and leave is not None and leave():
                return set()
        if ready:
            return ready


def drain(fd: int) -> None:
    """Empty a non-blocking wake-up pipe."""
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
