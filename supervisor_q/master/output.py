"""The children's stdout and stderr in the master: read on the arbiter's selector (the
report reader registers and rests these fds with the child's report pipe), then written
to the program's log file, or to the master's log one record per line tagged with the
process (`emails#2 stdout`, JSON: program, process, pid, stream); with the plain text
log, the lines of a read are formatted at once and written with one write (childlog.py).
Every process's recent output stays in a Ring for `tail`, and so does the master's own log.

A read takes at most a budget of bytes per stream (less when lines become log records,
which costs more): a child writing 10 MB/s fills its pipe and waits, the master's loop
does not. At the child's exit everything left is read and a last partial line flushed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from supervisor_q.config.loading import ProgramConfig
from supervisor_q.config.substitute import substitute
from supervisor_q.ctl.protocol import ControlError
from supervisor_q.logs import json_logging
from supervisor_q.master.childlog import (
    ESCAPED,
    child_level,
    plain_handler,
    text_lines,
    write_lines,
)
from supervisor_q.master.logfile import LogFile, Ring, RingHandler
from supervisor_q.master.pool import Pool
from supervisor_q.master.process import ChildProcess
from supervisor_q.master.wakeup import Wakeup

log = logging.getLogger("supervisor_q.output")

FILE_BUDGET = 1 << 20  # bytes read per stream and wake when they go to a file
LOG_BUDGET = 32 * 1024  # ... when each line becomes a record of the master's log
PLAIN_BUDGET = 256 * 1024  # ... when a read's lines are formatted at once (childlog.py,
# ~10x cheaper a line: about the time 32 KiB of records took)
MAX_LINE = 64 * 1024  # a longer line without a newline is logged in parts

Key = tuple[str, int, str]  # program, slot, stream


@dataclass
class Stream:
    key: Key
    label: str  # emails#2
    pid: int
    sink: LogFile | None  # None: the master's log
    partial: bytearray = field(default_factory=bytearray)


class OutputCapture:
    def __init__(self, wakeup: Wakeup) -> None:
        self.wakeup = wakeup
        self.streams: dict[int, Stream] = {}
        self.rings: dict[Key, Ring] = {}
        self.files: dict[str, LogFile] = {}
        self.failed_paths: set[str] = set()
        self.as_json = json_logging()  # --log-format json: a child's JSON line is merged
        self.master_ring = Ring()
        self.ring_handler = RingHandler(self.master_ring)
        root = logging.getLogger()
        if root.handlers:
            self.ring_handler.setFormatter(root.handlers[0].formatter)
        root.addHandler(self.ring_handler)

    def close(self) -> None:
        logging.getLogger().removeHandler(self.ring_handler)
        for sink in self.files.values():
            sink.close()

    def forget(self, program: str) -> None:
        """A removed program's output rings are freed (its log files stay on disk)."""
        for key in [k for k in self.rings if k[0] == program]:
            del self.rings[key]

    def ring(self, key: Key) -> Ring:
        ring = self.rings.get(key)
        if ring is None:
            ring = self.rings[key] = Ring()
        return ring

    def sink(self, program: ProgramConfig, slot: int, stream: str) -> LogFile | None:
        path = program.logfile(stream)
        if path is None:
            return None
        path = substitute(path, program.name, program.process_num(slot))
        sink = self.files.get(path)
        if sink is None and path not in self.failed_paths:
            try:
                sink = self.files[path] = LogFile(path, program.maxbytes(stream),
                                                  program.logfile_backups)
            except OSError as exc:  # said once; its lines go to the master's log
                self.failed_paths.add(path)
                log.error("%s: cannot open log file %s (%s): its output goes to the "
                          "master's log", program.name, path, exc.strerror or exc)
        return sink

    def fds(self, pool: Pool, child: ChildProcess) -> list[int]:
        """The child's open output fds, known here from now on."""
        run = pool.run_of(child)
        for stream, fd in run.outputs.items():
            if fd not in self.streams:
                self.streams[fd] = Stream((pool.name, child.slot, stream), child.name,
                                          child.pid or 0,
                                          self.sink(pool.program, child.slot, stream))
        return list(run.outputs.values())

    def read(self, pool: Pool, child: ChildProcess, drain: bool = False) -> None:
        """Read the child's pipes (all of it with drain, else a budget); close at EOF."""
        run = pool.run_of(child)
        for stream_name, fd in list(run.outputs.items()):
            self.fds(pool, child)
            stream = self.streams[fd]
            budget = (FILE_BUDGET if stream.sink is not None else PLAIN_BUDGET
                      if not self.as_json and plain_handler(log, self.ring_handler)
                      else LOG_BUDGET)
            eof = self.read_fd(stream, fd, None if drain else budget)
            if eof or drain:
                self.flush(stream)
                if run.registered:
                    self.wakeup.unregister(fd)
                os.close(fd)
                del self.streams[fd], run.outputs[stream_name]

    def read_fd(self, stream: Stream, fd: int, budget: int | None) -> bool:
        """True at EOF (the child and its own children closed the pipe)."""
        left = budget
        while left is None or left > 0:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return False
            except OSError:
                return True
            if not chunk:
                return True
            self.ring(stream.key).append(chunk)
            if stream.sink is not None:
                self.write(stream, chunk)
            else:
                self.lines(stream, chunk)
            if left is not None:
                left -= len(chunk)
        return False

    def write(self, stream: Stream, chunk: bytes) -> None:
        assert stream.sink is not None
        try:
            stream.sink.write(chunk)
        except OSError as exc:  # disk full, file gone: said once, then the master's log
            log.error("%s: cannot write log file %s (%s): its output goes to the master's "
                      "log", stream.label, stream.sink.path, exc.strerror or exc)
            stream.sink = None

    def lines(self, stream: Stream, chunk: bytes) -> None:
        stream.partial += chunk
        cut = stream.partial.rfind(b"\n")
        if cut < 0:
            if len(stream.partial) > MAX_LINE:
                self.flush(stream)
            return
        whole = bytes(stream.partial[:cut])
        del stream.partial[:cut + 1]
        handler = None if self.as_json else plain_handler(log, self.ring_handler)
        if handler is not None:  # the plain text log: the lines formatted at once
            write_lines(handler, log, f"{stream.label} {stream.key[2]}", stream.pid,
                        text_lines(whole, escape=True))
            return
        for line in whole.split(b"\n"):
            self.emit(stream, line)

    def flush(self, stream: Stream) -> None:
        if stream.partial and stream.sink is None:
            self.emit(stream, bytes(stream.partial))
        stream.partial.clear()

    def emit(self, stream: Stream, line: bytes) -> None:
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if not self.as_json:  # no terminal escapes or fake lines in a text log (JSON escapes)
            text = text.translate(ESCAPED)
        program, _, name = stream.key
        level, text = child_level(text, strip=not self.as_json)
        record = log.makeRecord(f"{stream.label} {name}", level, __file__, 0, text, None, None)
        record.process, record.program, record.label, record.stream = (
            stream.pid, program, stream.label, name)
        if self.as_json and text.startswith("{"):
            try:
                fields = json.loads(text)
            except ValueError:
                fields = None
            if isinstance(fields, dict):
                record.fields = fields
        log.handle(record)

    def reopen(self) -> None:
        """SIGUSR2: every log file opened again (after logrotate moved it)."""
        self.failed_paths.clear()
        for path, sink in self.files.items():
            try:
                sink.reopen()
            except OSError as exc:  # written to again later: LogFile.write opens it
                log.error("cannot reopen log file %s: %s", path, exc.strerror or exc)
        log.info("log files reopened (%d)", len(self.files))

    def tail(self, pool: Pool | None, slot: int | None, stream: str, after: int | None,
             lines: int) -> dict[str, object]:
        """What `tail` asks: the file's path when the stream has one, else the ring's
        last lines (or what came after offset `after`) and the offset to ask from next."""
        if pool is None:
            ring = self.master_ring
        else:
            slots = sorted(c.slot for c in pool.children) or [1]
            slot = slot if slot is not None else slots[0]
            known = set(slots) | {key[1] for key in self.rings if key[0] == pool.name}
            if slot not in known:  # `tail w#9`: one line, not silence (or a -f forever)
                raise ControlError(f"no process {pool.name}#{slot} (it has "
                                   f"{', '.join(f'#{n}' for n in sorted(known))})")
            path = pool.program.logfile(stream)
            if path is not None:
                path = substitute(path, pool.name, pool.program.process_num(slot))
                if path not in self.failed_paths:  # else its lines went to the ring
                    return {"file": path}
            if stream == "stderr" and pool.program.redirect_stderr:
                stream = "stdout"
            ring = self.ring((pool.name, slot, stream))
        data = ring.last_lines(lines) if after is None else ring.since(after)
        return {"data": data.decode("utf-8", "replace"), "offset": ring.end}
