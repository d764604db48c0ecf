"""`preload: true`: a pool's children forked from a zygote that imported the job code once.

The master's side (the zygote process itself: zygotechild.py). PreloadSpawner is the
arbiter's spawner: programs without `preload` fork as before (ForkSpawner). For a
preloading program it keeps one zygote, started by `ready()` (each pool's tick) and
watched on the master's selector, so the loop never blocks on an import:

- the pool forks only from a zygote of the current code: its key, (epoch, restart
  generation), changes on `restart-workers` (the generation), a reload that changed the
  program and `restart PROGRAM` (renew: the epoch); while the new one imports, the old
  children keep running and nothing is forked, then they are replaced, rolling;
- a zygote that dies is started again with the same key: no child is replaced;
- a zygote that cannot import is logged and shown in `status` (preload.error); the old
  children keep running; forks come from the previous zygote if there is one, else
  plainly (they then fail to import: BACKOFF, FATAL, as a broken deploy does today);
  a new zygote is tried again after RETRY seconds or at the next deploy.

The master makes each child's pipes (report, stdout, stderr) as for a plain fork and
passes the write ends to the zygote (SCM_RIGHTS), with the memfd of its job slot
(jobslots.py) last, so output capture, reports, pids,
signals, deadlines, memory limits and reaping are exactly those of a plain child: the
workers are reparented to the master (PR_SET_CHILD_SUBREAPER) and reaped by its loop.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor_q import exitcodes
from supervisor_q.config.loading import ProgramConfig, WorkerProgram
from supervisor_q.master import capture
from supervisor_q.master.process import ChildProcess
from supervisor_q.master.spawn import (
    ForkSpawner,
    Spawned,
    _drop_slot,
    _fork_deferring_signals,
    _handed_over,
    _widen_pipe,
    libc,
)
from supervisor_q.master.zygotechild import zygote_main
from supervisor_q.queue.fencing import MASTER_ID_ENV
from supervisor_q.worker.jobslot import shared_slot

if TYPE_CHECKING:
    from supervisor_q.master.guardian import Guardian
    from supervisor_q.master.pool import Pool
    from supervisor_q.master.wakeup import Wakeup

log = logging.getLogger("supervisor_q.zygote")

PR_SET_CHILD_SUBREAPER = 36
RETRY = 30.0  # seconds before a zygote that could not import is tried again
REPLY_TIMEOUT = 5.0  # seconds the master waits for a fork's pid (a fork takes ~1 ms)


def preloading(program: ProgramConfig) -> bool:
    return isinstance(program, WorkerProgram) and program.preload


def become_subreaper() -> bool:
    """Orphaned descendants (a zygote's workers) are reparented to this process."""
    try:
        return libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@dataclass
class Zygote:
    pid: int
    sock: socket.socket
    key: tuple[int, float | None]  # (epoch, restart generation) it was started for
    ready: bool = False


class PreloadSpawner(ForkSpawner):
    """ForkSpawner, plus a zygote per `preload: true` program."""

    def __init__(self, redis_url: str, guardian: Guardian | None = None,
                 wakeup: Wakeup | None = None) -> None:
        super().__init__(redis_url, guardian=guardian)
        self.wakeup = wakeup
        self.generation: float | None = None  # the master's restart generation (commands.py)
        self.current: dict[str, Zygote] = {}  # ready: children fork from it
        self.pending: dict[str, Zygote] = {}  # importing
        self.loaded: dict[str, tuple[int, float | None]] = {}  # key of the last ready one
        self.epochs: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        self.waiting: set[str] = set()  # programs whose missing children wait (said once)
        self.retry_at: dict[str, tuple[tuple[int, float | None], float]] = {}  # failed key
        self.subreaper = False
        self.ends: dict[int, str] = {}  # zygote pid -> how it ended, reaped before its EOF
        self.dead: dict[int, str] = {}  # zygote pid -> program, its EOF read before reaping

    def reaped(self, pid: int, status: int) -> None:
        """The arbiter reaped pid, none of its pools' children: a zygote's end is logged
        with how it ended (once both its EOF was read and it was reaped)."""
        how = ended(status)
        name = self.dead.pop(pid, None)
        if name is not None:
            self._log_end(name, pid, how)
        elif any(z.pid == pid for z in self.current.values()):
            self.ends[pid] = how

    # -- the pool's side ----------------------------------------------------------

    def ready(self, pool: Pool, now: float) -> bool:
        """Tend the program's zygote; True when the pool may fork now."""
        if not preloading(pool.program):
            return True
        name = pool.name
        if pool.mode != "running":
            self.drop(name)
            return True
        key = (self.epochs.get(name, 0), self.generation)
        self._poll(pool, now)
        current = self.current.get(name)
        if name not in self.pending and (current is None or current.key != key):
            failed_key, retry_at = self.retry_at.get(name, (key, 0.0))
            if failed_key != key or now >= retry_at:  # a new deploy tries at once
                self._start(pool.program, key)
        if current is not None and current.key == key:
            return True
        # A new zygote imports: wait for it (the old children keep running).
        if name in self.pending:
            return False
        # None imports and the last try failed: the old zygote, while it lives, serves the
        # forks. Without it, a program that ran preloaded children waits for a zygote (a
        # plain fork would import the code that failed, and its retries end FATAL); one
        # that never had a zygote forks plain, and fails to start as any other program.
        if current is not None or not (name in self.errors and name in self.loaded):
            return True
        if len(pool.active()) < pool.want and name not in self.waiting:
            self.waiting.add(name)  # said once per wait
            log.warning("%s: %d of %d children wait for a zygote that imports (the last "
                        "import failed: %s)", name, pool.want - len(pool.active()),
                        pool.want, self.errors[name][:300])
        return False

    def renew(self, name: str) -> None:
        """New code for this program: a fresh zygote, then its children replaced."""
        self.epochs[name] = self.epochs.get(name, 0) + 1
        self.retry_at.pop(name, None)

    def drop(self, name: str) -> None:
        """The program stopped or is gone: no zygote (a start imports afresh)."""
        for table in (self.current, self.pending):
            zygote = table.pop(name, None)
            if zygote is not None:
                self._close(zygote)
                self.renew(name)
        self.loaded.pop(name, None)  # started again, it is a first start

    def status(self, pool: Pool) -> dict | None:
        if not preloading(pool.program):
            return None
        current, pending = self.current.get(pool.name), self.pending.get(pool.name)
        return {"zygote_pid": current.pid if current else None,
                "importing_pid": pending.pid if pending else None,
                "error": self.errors.get(pool.name)}

    def spawn(self, program: ProgramConfig, child: ChildProcess, paused: bool) -> Spawned:
        zygote = self.current.get(program.name) if preloading(program) else None
        if zygote is None:  # not preloading, or no zygote imported yet: a plain fork
            return super().spawn(program, child, paused)
        try:
            return self._fork_from(zygote, program, child, paused)
        except OSError:
            self.current.pop(program.name, None)
            self._close(zygote)
            raise

    # -- zygotes ----------------------------------------------------------------------

    def _start(self, program: ProgramConfig, key: tuple[int, float | None]) -> None:
        assert isinstance(program, WorkerProgram)
        if not self.subreaper:
            self.subreaper = become_subreaper()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = _fork_deferring_signals()
        except OSError as exc:
            ours.close()
            theirs.close()
            self._failed(program.name, key, f"fork failed: {exc}", 0.0)
            return
        if pid == 0:  # the zygote: never return into the master's code
            code = exitcodes.ERROR
            try:
                ours.close()
                code = zygote_main(program, theirs, self.redis_url, self.master_pid, key[1])
            finally:
                os._exit(code)
        theirs.close()
        if self.guardian is not None:
            self.guardian.watch(pid)
        zygote = Zygote(pid, ours, key)
        self.pending[program.name] = zygote
        if self.wakeup is not None:  # its messages wake the loop (the tag is not dispatched)
            self.wakeup.register(ours, ("zygote", program.name))
        log.info("%s: zygote pid=%d importing %s", program.name, pid,
                 ", ".join(program.imports) or "nothing")

    def _poll(self, pool: Pool, now: float) -> None:
        """Read what the program's zygotes said, without blocking."""
        name = pool.name
        pending = self.pending.get(name)
        if pending is not None:
            message = _receive(pending.sock)
            if message is None:
                pass
            elif message.get("ready"):
                self._promote(pool, pending, now)
            else:
                del self.pending[name]
                self._close(pending)
                self._failed(name, pending.key, str(message.get("error", "the zygote exited")),
                             now)
        current = self.current.get(name)
        if current is not None and _receive(current.sock) is not None:  # EOF: it died
            how = self.ends.pop(current.pid, None)
            if how is None:
                self.dead[current.pid] = name  # logged when the arbiter reaps it
            else:
                self._log_end(name, current.pid, how)
            del self.current[name]
            self._close(current)

    def _promote(self, pool: Pool, zygote: Zygote, now: float) -> None:
        name = pool.name
        del self.pending[name]
        old = self.current.pop(name, None)
        if old is not None:
            self._close(old)
        zygote.ready = True
        self.current[name] = zygote
        self.errors.pop(name, None)
        self.waiting.discard(name)
        log.info("%s: zygote pid=%d ready", name, zygote.pid)
        if self.loaded.get(name, zygote.key) != zygote.key:  # new code: replace, rolling
            pool.replace_children(now, "new code preloaded")
        self.loaded[name] = zygote.key

    def _failed(self, name: str, key: tuple[int, float | None], error: str,
                now: float) -> None:
        log.error("%s: preload failed, the running children keep their code: %s", name,
                  error)
        self.errors[name] = error
        self.retry_at[name] = (key, now + RETRY)

    def _log_end(self, name: str, pid: int, how: str) -> None:
        if name in self.errors:  # no new one imports the current code, for now
            log.error("%s: zygote pid=%d %s; the last import failed, so none is started "
                      "until a retry or the next deploy imports; children keep running, "
                      "and one that ends is replaced from the next zygote", name, pid, how)
        else:
            log.error("%s: zygote pid=%d %s; starting a new one (children keep running)",
                      name, pid, how)

    def _close(self, zygote: Zygote) -> None:
        """Close its socket: a live zygote reads EOF and exits (the loop reaps it)."""
        if self.wakeup is not None:
            try:
                self.wakeup.unregister(zygote.sock)
            except (KeyError, ValueError):
                pass
        zygote.sock.close()
        if self.guardian is not None:
            self.guardian.forget(zygote.pid)

    def _fork_from(self, zygote: Zygote, program: ProgramConfig, child: ChildProcess,
                   paused: bool) -> Spawned:
        read_fd, write_fd = os.pipe()
        _widen_pipe(write_fd)
        pipes = capture.make_pipes(program)
        made = shared_slot()  # its memfd goes last, after the optional stderr pipe
        request = {"slot": child.slot, "queues": list(child.queues or ()), "paused": paused,
                   "master_id": os.environ.get(MASTER_ID_ENV, ""),  # it may have changed
                   "jobslot": made is not None}
        fds = [write_fd] + [write for _read, write in pipes.values()] + ([made[0]] if made else [])
        try:
            zygote.sock.settimeout(REPLY_TIMEOUT)
            socket.send_fds(zygote.sock, [json.dumps(request).encode()], fds)
            reply = json.loads(zygote.sock.recv(4096) or b"{}")
        except (OSError, ValueError) as exc:
            os.close(read_fd)
            capture.close_all(pipes)
            _drop_slot(made)
            raise OSError(f"zygote pid={zygote.pid} did not fork: {exc}") from exc
        finally:
            zygote.sock.setblocking(False)
            os.close(write_fd)
        _handed_over(made)  # the worker maps its own copy (sent above)
        pid = int(reply.get("pid", -1))
        if pid <= 0:
            os.close(read_fd)
            capture.close_all(pipes)
            if made:
                made[1].close()
            raise OSError(f"zygote pid={zygote.pid} did not fork")
        if self.guardian is not None:
            self.guardian.watch(pid)
        os.set_blocking(read_fd, False)
        return Spawned(pid, pid, read_fd, capture.in_master(pipes), made[1] if made else None)


def _receive(sock: socket.socket) -> dict | None:
    """One message if one waits; {} at EOF (the zygote is gone); None if nothing yet."""
    try:
        data = sock.recv(4096, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return {}
    if not data:
        return {}
    try:
        message = json.loads(data)
    except ValueError:
        return {"error": "unreadable message from the zygote"}
    return message if isinstance(message, dict) else {}


def ended(status: int) -> str:
    """A waitpid status as "exited with 3" or "killed by SIGKILL"."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exited with {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else "exited"


