"""The child -> master report pipe: ready, job started (with its timeout), job finished.

One short text line per event, written with a single os.write (atomic below
PIPE_BUF), so the hot path costs two small syscalls per job. The master reads the
lines to know each child's current job and deadline. Imports nothing else from the
package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol


class Reporter(Protocol):
    def ready(self) -> None: ...
    def job_started(self, job_id: str, name: str, queue: str, timeout: float) -> None: ...
    def job_finished(self, job_id: str) -> None: ...


class NullReporter:
    """For `supervisor-q work` without a master."""

    def ready(self) -> None:
        pass

    def job_started(self, job_id: str, name: str, queue: str, timeout: float) -> None:
        pass

    def job_finished(self, job_id: str) -> None:
        pass


class PipeReporter:
    """Writes events to the master's end of a pipe; a dead master is ignored here
    (the parent-death signal ends the child)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def _send(self, line: str) -> None:
        try:
            os.write(self.fd, line.encode()[:4000] + b"\n")
        except OSError:
            pass

    def ready(self) -> None:
        self._send("R")

    def job_started(self, job_id: str, name: str, queue: str, timeout: float) -> None:
        # Names and queues contain no spaces (validated), the name goes last anyway.
        self._send(f"S {job_id} {timeout:g} {queue} {name}")

    def job_finished(self, job_id: str) -> None:
        self._send(f"E {job_id}")


@dataclass(frozen=True)
class Event:
    kind: str  # "ready", "started", "finished"
    job_id: str = ""
    timeout: float = 0.0
    queue: str = ""
    name: str = ""


def parse_lines(buffer: bytes) -> tuple[list[Event], bytes]:
    """Complete events in buffer, and the unfinished rest to keep for the next read."""
    *lines, rest = buffer.split(b"\n")
    events = []
    for raw in lines:
        parts = raw.decode(errors="replace").split(" ", 4)
        if parts[0] == "R":
            events.append(Event("ready"))
        elif parts[0] == "S" and len(parts) == 5:
            try:
                timeout = float(parts[2])
            except ValueError:
                continue
            events.append(Event("started", parts[1], timeout, parts[3], parts[4]))
        elif parts[0] == "E" and len(parts) == 2:
            events.append(Event("finished", parts[1]))
    return events, rest
