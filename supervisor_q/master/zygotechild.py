"""The zygote process of a `preload: true` program (its master side: zygote.py).

Forked by the master like any child, it applies the program's environment, directory,
umask and user, imports `setup:` and `import:` once, warms, collects, fills its
allocators' holes, freezes the heap (gc.freeze: the collector never touches those
objects again, so their pages stay shared) and says
`{"ready": true}` on its socket. Then, for each request (slot, queues, paused, and the
write ends of the report and output pipes as SCM_RIGHTS, then the job slot's memfd), it
double-forks: an intermediate process forks the worker and exits at once, so the worker
is reparented to the master (a PR_SET_CHILD_SUBREAPER) and the master reaps it as it
reaps any child.
The zygote answers `{"pid": N}`; the worker waits until its parent is the master before
it sets its parent-death signal. EOF on the socket (the master closed it, or died) ends
the zygote.
"""

from __future__ import annotations

import gc
import json
import logging
import mmap
import os
import socket
import time

from supervisor_q import exitcodes
from supervisor_q.config.loading import WorkerProgram
from supervisor_q.config.substitute import substitute
from supervisor_q.forked import exit_with
from supervisor_q.master import capture
from supervisor_q.master.holes import fill_holes, fill_malloc_holes
from supervisor_q.master.privileges import CannotSwitch, apply_umask, drop_privileges
from supervisor_q.master.process import ChildProcess
from supervisor_q.master.spawn import (
    _close_inherited_fds,
    _reset_signals,
    _set_parent_death_signal,
    boot_program,
    prepared_queue,
    start_worker,
)
from supervisor_q.master.warm import tag_types, warm_zygote
from supervisor_q.proctitle import set_title
from supervisor_q.queue.backend import RedisQueue
from supervisor_q.queue.connection import PLAIN_SCHEMES
from supervisor_q.queue.fencing import MASTER_ID_ENV
from supervisor_q.worker.boot import BootError
from supervisor_q.worker.jobslot import map_slot

log = logging.getLogger("supervisor_q.zygote")

REPARENT_WAIT = 5.0  # seconds a new worker waits for the master to become its parent
_PREPARED: RedisQueue | None = None  # the children's queue, built unconnected (_prepare_queue)


def send(sock: socket.socket, message: dict) -> None:
    sock.sendall(json.dumps(message).encode())


def zygote_main(program: WorkerProgram, sock: socket.socket, redis_url: str,
                master_pid: int, generation: float | None) -> int:
    """The zygote's whole life, in the forked child; returns its exit code."""
    os.setpgid(0, 0)
    _set_parent_death_signal()
    _reset_signals()
    if os.getppid() != master_pid:
        return exitcodes.ERROR
    _close_inherited_fds({sock.fileno()})
    null = os.open(os.devnull, os.O_RDWR)  # never the master's stdout/stderr
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    set_title(f"supervisor-q {program.name} zygote")
    freeze = os.environ.get("SUPERVISOR_Q_PRELOAD_FREEZE") != "0"  # 0: bench/preload_memory.py
    try:
        _enter(program)
        boot_program(program)
    except (BootError, CannotSwitch, OSError) as exc:
        send(sock, {"error": str(exc)[:500]})
        return exitcodes.BOOT_ERROR
    if os.environ.get("SUPERVISOR_Q_PRELOAD_WARM") != "0":  # 0: bench/preload_memory.py
        warm_zygote()  # what a child's first jobs would build lazily, built once here
        _prepare_queue(program, redis_url)
        tag_types()  # after everything that creates classes
    if freeze:  # no collection from here on: one would free holes in the pages the children
        gc.disable()  # share (each enables the collector again); the garbage the imports
        gc.collect()  # left is freed first, so that its holes are filled below
    if os.environ.get("SUPERVISOR_Q_PRELOAD_FILL") != "0":  # 0: bench/preload_memory.py
        fill_holes()  # a child's new objects go to fresh pools, not the shared pages
        fill_malloc_holes()  # and its mallocs to the top of the heap
    if freeze:
        gc.freeze()  # the collector never walks these objects: their pages stay shared
    send(sock, {"ready": True})
    return _serve(program, sock, redis_url, master_pid, generation)


def _prepare_queue(program: WorkerProgram, redis_url: str) -> None:
    """Build the children's RedisQueue and client here, unconnected: building a client
    touches hundreds of redis-py objects (its response callbacks), a page copied for
    each in every child that builds its own. Plain URLs only: a Sentinel or Cluster
    client asks its servers as it is built, and a child must not share a socket."""
    global _PREPARED
    if redis_url.split("://", 1)[0].lower() not in PLAIN_SCHEMES:
        return
    try:
        _PREPARED = prepared_queue(program, redis_url)
    except Exception:  # noqa: BLE001 - a bad URL: each child reports it as it would
        _PREPARED = None


def _enter(program: WorkerProgram) -> None:
    """What a child would do before importing: environment (slot 1's numbers), directory,
    umask, user. Each child sets its own slot's environment again after the fork."""
    number = program.process_num(1)
    os.environ.update({key: substitute(value, program.name, number)
                       for key, value in program.environment.items()})
    if program.directory:
        try:
            os.chdir(program.directory)
        except OSError as exc:
            raise OSError(f"cannot enter directory {program.directory!r}: "
                          f"{exc.strerror}") from exc
    apply_umask(program.umask)
    drop_privileges(program.user)


def _serve(program: WorkerProgram, sock: socket.socket, redis_url: str, master_pid: int,
           generation: float | None) -> int:
    """Fork a worker per request. Lean on purpose: every page the zygote writes after a
    fork stops being shared with the children forked before, so it reads no JSON (the
    worker parses its request), builds no file objects, and answers with plain bytes."""
    run = (redis_url, master_pid, generation)
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(sock, 4096, 4)
        except OSError:
            return exitcodes.OK
        if not message:  # the master closed our socket: a newer zygote took over
            return exitcodes.OK
        try:
            pid = _fork_worker(program, message, fds, sock, run)
        finally:
            for fd in fds:
                os.close(fd)
        sock.sendall(b'{"pid": %d}' % pid)


def _fork_worker(program: WorkerProgram, message: bytes, fds: list[int], sock: socket.socket,
                 run: tuple[str, int, float | None]) -> int:
    """Double fork; the worker's pid, or -1 if the intermediate said nothing."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:  # the intermediate: fork the worker, say its pid, exit
        try:
            os.close(read_end)
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                _worker_process(program, message, fds, sock, run)
            try:
                os.setpgid(pid, pid)  # also done in the worker: a group before its pid is out
            except OSError:
                pass
            os.write(write_end, str(pid).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data = os.read(read_end, 32)  # one write of a few bytes, then EOF
    os.close(read_end)
    os.waitpid(middle, 0)
    return int(data) if data.isdigit() else -1


def _worker_process(program: WorkerProgram, message: bytes, fds: list[int],
                    sock: socket.socket, run: tuple[str, int, float | None]) -> None:
    """The worker forked by the zygote: never returns."""
    def body() -> int:
        os.setpgid(0, 0)
        request = json.loads(message)
        slot = None
        if request.get("jobslot"):  # the job slot's memfd comes last: mapped, then closed
            slot = map_slot(fds[-1])
            os.close(fds.pop())
        report_fd, out = fds[0], fds[1]
        err = fds[2] if len(fds) > 2 else out
        capture.onto_stdio(out, err, program)
        sock.close()
        for fd in {out, err}:
            os.close(fd)
        return _work(program, request, report_fd, run, slot)

    exit_with(body)


def _work(program: WorkerProgram, request: dict, report_fd: int,
          run: tuple[str, int, float | None], slot: mmap.mmap | None) -> int:
    redis_url, master_pid, generation = run
    deadline = time.monotonic() + REPARENT_WAIT
    while os.getppid() != master_pid:  # the intermediate exits at once
        if time.monotonic() > deadline:
            return exitcodes.ERROR
        time.sleep(0.0005)
    _set_parent_death_signal()  # only now: it fires when the *current* parent dies
    if gc.get_freeze_count():  # what the zygote still held young is frozen too, so this
        gc.freeze()  # child's collections never walk (and copy) the zygote's pages
    gc.enable()
    if os.getppid() != master_pid:  # the master died before prctl took effect
        return exitcodes.ERROR
    child = ChildProcess(program.name, int(request["slot"]))
    child.queues = tuple(request["queues"]) if request.get("queues") else None
    number = program.process_num(child.slot)
    os.environ.update({key: substitute(value, program.name, number)
                       for key, value in program.environment.items()})
    if isinstance(request.get("master_id"), str):  # the master's fleet id now, not at preload
        os.environ[MASTER_ID_ENV] = request["master_id"]
    set_title(f"supervisor-q {child.name} starting")
    return start_worker(program, child, report_fd, bool(request.get("paused")), redis_url,
                        master_pid, preloaded=True, generation=generation, queue=_PREPARED,
                        slot=slot)
