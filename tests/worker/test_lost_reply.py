"""A reserve that ran on the server while its reply was lost (the connection died in
between, as in a failover): once Redis answers again the worker hands such a job back at
once instead of leaving it reserved until its timeout runs out."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from supervisor_q.queue import payload as payloads
from supervisor_q.queue.backend import RedisQueue, connect
from tests.conftest import RedisHandle
from tests.helpers import wait_until
from tests.jobmods.failover import runs

MARKER = b"lost-reply-job"


class ReplyDropper:
    """A loopback TCP proxy in front of a server that, once armed, closes the
    connection instead of relaying the first reply (or request) containing marker."""

    def __init__(self, target: str, marker: bytes = MARKER, requests: bool = False) -> None:
        self.target = target  # the server's unix socket
        self.marker = marker
        self.requests = requests  # drop the first request containing marker instead
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.dropped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True),
                             daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies != self.requests and self.marker in data and self.armed.is_set():
                    self.armed.clear()
                    self.dropped.set()
                    break
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def close(self) -> None:
        self.listener.close()


def test_a_reservation_whose_reply_was_lost_goes_back_when_redis_answers_again(
        redis_db: RedisHandle, redis_url: str, tmp_path: Path) -> None:
    proxy = ReplyDropper(str(redis_db.server.unix_socket))
    proxied = f"redis://127.0.0.1:{proxy.port}/{redis_db.db}"
    queue = RedisQueue(connect(redis_url))
    log = str(tmp_path / "runs")
    worker = subprocess.Popen(
        [sys.executable, "-m", "supervisor_q", "--redis-url", proxied, "work",
         "--import", "tests.jobmods.failover", "--timeout", "600", "--sleep", "0.2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SQ_RUN_LOG": log})
    try:
        wait_until(lambda: len(queue.client.client_list()) > 2, timeout=15,
                   message="the worker to connect")
        proxy.armed.set()
        built = payloads.build("tests.failover.run", "default", [7], {})
        queue.push("default", MARKER.decode(), payloads.encode(built))
        wait_until(proxy.dropped.is_set, timeout=15, message="the reserve's reply to be cut")
        # The timeout is 600 s: only the hand-back can bring the job back in time.
        wait_until(lambda: runs(log) == [7], timeout=15, message="the job to run")
        wait_until(lambda: queue.counts("default")["reserved"] == 0, timeout=10)
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=15)
        proxy.close()
    assert "went back to their queue" in err, err
    assert runs(log) == [7], "ran once"
    queue.close()


def test_an_ack_sent_without_waiting_whose_connection_went_is_sent_again(
        redis_db: RedisHandle) -> None:
    """An ack sent without waiting (prefetch) that never reached the server, its
    connection gone: it is sent again (resend_lost_acks, which the worker calls before
    its next reserve and before it exits), or the finished job would run again."""
    dropper = ReplyDropper(str(redis_db.server.unix_socket), b"lost-ack-1", requests=True)
    queue = RedisQueue(connect(f"redis://127.0.0.1:{dropper.port}/{redis_db.db}"))
    for job_id in ("lost-ack-1", "lost-ack-2"):
        built = payloads.build("tests.noop", "default", [], {}, job_id=job_id)
        queue.push("default", built.id, payloads.encode(built))
    _, got = queue.reserve("default", default_timeout=60, count=2)
    assert [j.id for j in got.jobs] == ["lost-ack-1", "lost-ack-2"]
    dropper.armed.set()
    queue.ack_nowait("default", "lost-ack-1")
    wait_until(dropper.dropped.is_set, timeout=5)
    try:
        queue.reserve("default", default_timeout=60)
    except Exception as exc:  # noqa: BLE001  (the connection closed under it)
        assert "onnection" in str(exc), exc
    assert queue.counts("default")["reserved"] == 2, "the ack never ran"
    assert len(queue.lost_acks) == 1
    queue.resend_lost_acks()
    assert queue.counts("default")["reserved"] == 1, "sent again, it ran"
    assert queue.lost_acks == []
