"""A program's log file with Supervisor's size-based rotation, and the byte rings that
keep each process's recent output (and the master's own log) in memory for `tail`.

LogFile writes whole chunks with one write(2) each; at `maxbytes` it renames
file -> file.1 -> ... -> file.N (N = backups; 0 backups: the file starts over) and opens
a new one; `file` itself never goes missing in between. A line is kept whole in one
file unless it alone is longer than maxbytes.
reopen() (SIGUSR2) opens the path again, after an outside rotation moved the file.
"""

from __future__ import annotations

import logging
import os

RING_BYTES = 64 * 1024  # recent output kept per process and stream, and of the master


class Ring:
    """The last RING_BYTES bytes written, and how many were ever written (an offset
    `tail -f` asks from)."""

    def __init__(self, size: int = RING_BYTES) -> None:
        self.size = size
        self.data = bytearray()
        self.end = 0

    def append(self, chunk: bytes) -> None:
        self.data += chunk
        self.end += len(chunk)
        if len(self.data) > self.size:
            del self.data[:len(self.data) - self.size]

    def since(self, offset: int) -> bytes:
        """What was written after offset (all that is kept, if some was dropped)."""
        kept = len(self.data)
        skip = max(0, offset - (self.end - kept))
        return bytes(self.data[skip:]) if skip < kept else b""

    def last_lines(self, count: int) -> bytes:
        data = bytes(self.data)
        if count <= 0:
            return b""
        cut = len(data) - 1 if data.endswith(b"\n") else len(data)
        for _ in range(count):
            cut = data.rfind(b"\n", 0, cut)
            if cut < 0:
                return data
        return data[cut + 1:]


class RingHandler(logging.Handler):
    """Keeps the master's own formatted log lines in a Ring (`tail --master`); the
    children's lines it carries are left to their processes' rings."""

    def __init__(self, ring: Ring) -> None:
        super().__init__()
        self.ring = ring

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "stream", None) is not None:  # a child's line: in its own ring
            return
        try:
            self.ring.append(self.format(record).encode("utf-8", "replace") + b"\n")
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def drop_master_ring() -> None:
    """In a forked child: stop logging into the master's ring it inherited. Its copy
    is dead (the master never sees it) and each line appended there shifted 64 KiB,
    copying the master's pages into the child."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, RingHandler)]:
        root.removeHandler(handler)


class LogFile:
    def __init__(self, path: str, maxbytes: int, backups: int) -> None:
        self.path = path
        self.maxbytes = maxbytes
        self.backups = backups
        self.fd = -1
        self.size = 0
        self.open()

    def open(self) -> None:
        """Raises OSError when the file cannot be opened (the caller logs it once)."""
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                          0o644)
        self.size = os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def reopen(self) -> None:
        self.close()
        self.open()

    def write(self, data: bytes) -> None:
        if self.fd < 0:  # a reopen failed: try again (OSError if it still cannot)
            self.open()
        while data:
            if self.maxbytes and self.size >= self.maxbytes:
                self.rotate()
            room = self.maxbytes - self.size if self.maxbytes else len(data)
            part = data[:room]
            if len(part) < len(data):  # the chunk crosses maxbytes: end at a line
                cut = part.rfind(b"\n")
                if cut < 0 and self.size > 0:  # the line starts the next file
                    self.rotate()
                    continue
                part = part[:cut + 1] if cut >= 0 else part
            written = os.write(self.fd, part)
            self.size += written
            data = data[written:]

    def rotate(self) -> None:
        self.close()
        if self.backups > 0:
            for number in range(self.backups - 1, 0, -1):
                older = f"{self.path}.{number}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{number + 1}")
            if os.path.exists(self.path):
                self._move_to_first_backup()
                return
        elif os.path.exists(self.path):
            os.truncate(self.path, 0)
        self.open()

    def _move_to_first_backup(self) -> None:
        """file -> file.1 with no moment in which `file` is missing (a log shipper or
        `tail -F` reading it sees one rename, not a vanished file): link the full file
        as file.1, then rename a fresh empty file over `file`."""
        first, fresh = f"{self.path}.1", f"{self.path}.new"
        try:
            if os.path.lexists(first):
                os.unlink(first)
            os.link(self.path, first)
            fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            os.close(fd)
            os.replace(fresh, self.path)
        except OSError:  # no hard links on this file system: a plain rename
            os.replace(self.path, first)
        self.open()
