"""Instructions per job of the queue client alone (RedisQueue on its hot connection, no
worker), counted by valgrind's callgrind over two drains (1,300 jobs less 300).

    .venv/bin/python bench/client_instructions.py [ahead|x16|raw]

- ahead: the calls a prefetch-1 worker makes per no-op job: reserve_ahead (acking the
  job before, with its done record), then ahead_result.
- x16: reserve of 16 jobs acking the 16 before, per job.
- raw: the floor: RESERVE's bytes packed by hand, one sendall, replies read with
  recv and hiredis, no RedisQueue (needs this checkout's queue/wire.py).

SQ_BENCH_PATH=DIR counts another checkout's supervisor_q (a before/after in one run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("SQ_BENCH_PATH") or str(ROOT))
sys.path.insert(1, str(ROOT))

from bench.common import start_server  # noqa: E402
from bench.instructions import RECORD, collected, fill  # noqa: E402

SMALL, LARGE = 300, 1300


def drain(url: str, mode: str) -> None:
    from supervisor_q.queue.backend import RedisQueue, connect
    from supervisor_q.queue.jobinfo import Done

    queue = RedisQueue(connect(url, socket_timeout=11))
    queue.who = '"host":"vm","pid":1'
    if mode == "raw":
        raw_loop(queue)
        return
    acks: list[Done] = []
    while True:
        if mode == "ahead":
            queue.reserve_ahead("bench", default_timeout=60, ack_ids=acks)
            result = queue.ahead_result()
        else:
            _, result = queue.reserve("bench", default_timeout=60, ack_ids=acks, count=16)
        if result is None or not result.jobs:
            break
        acks = [Done(job.id, 3_600_000, RECORD) for job in result.jobs]


def raw_loop(q: Any) -> None:
    """(This checkout's queue/wire.py packs the bytes.)"""
    from redis._parsers.hiredis import NOT_ENOUGH_DATA

    from supervisor_q.queue.wire import headed, pack_args

    q.client.script_load(q._reserve.script)
    conn = q._connection("bench")
    sock, reader, holder = conn._sock, conn._parser._reader, q.holder()
    head = headed(q._reserve.sha, q._job_keys("bench"),
                  [60000, q.margin_ms, 1, holder, q.who, q.done_cap])
    acks: list = []
    while True:
        sock.sendall(b"*%d\r\n%s%s" % (22 + len(acks), head, pack_args(acks)))
        reply = reader.gets()
        while reply is NOT_ENOUGH_DATA:
            reader.feed(sock.recv(65536))
            reply = reader.gets()
        if isinstance(reply, Exception):
            raise reply
        if len(reply) == 2:
            return
        acks = [reply[2], f"{holder}|{int(reply[4])}", 3_600_000, RECORD]


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        drain(sys.argv[2], sys.argv[3])
        return
    mode = sys.argv[1] if len(sys.argv) > 1 else "ahead"
    if mode not in ("ahead", "x16", "raw"):
        raise SystemExit(__doc__)
    totals = []
    for jobs in (SMALL, LARGE):
        server, tmp = start_server()
        try:
            fill(server.url, jobs)
            done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                                   sys.executable, __file__, "--child", server.url, mode],
                                  capture_output=True, text=True, env=os.environ)
            totals.append(collected(done.stderr))
        finally:
            server.stop()
            tmp.cleanup()
    which = os.environ.get("SQ_BENCH_PATH") or "this checkout"
    print(f"queue client, {mode}: {(totals[1] - totals[0]) / (LARGE - SMALL):,.0f} "
          f"instructions per job ({which})")


if __name__ == "__main__":
    main()
