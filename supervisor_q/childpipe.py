"""The child -> master report pipe: ready, job started (with its timeout), job finished.

One short text line per event, written with a single os.write (atomic below
PIPE_BUF), so the hot path costs two small syscalls per job. The master reads the
lines to know each child's current job and deadline. Imports nothing else from the
package.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol


class Reporter(Protocol):
    def ready(self, generation: float | None) -> None: ...
    def job_started(self, job_id: str, name: str, queue: str, timeout: float,
                    attempts: int) -> None: ...
    def job_finished(self, job_id: str) -> None: ...


class NullReporter:
    """For `supervisor-q work` without a master."""

    def ready(self, generation: float | None) -> None:
        pass

    def job_started(self, job_id: str, name: str, queue: str, timeout: float,
                    attempts: int) -> None:
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

    def ready(self, generation: float | None) -> None:
        self._send("R -" if generation is None else f"R {generation!r}")

    def job_started(self, job_id: str, name: str, queue: str, timeout: float,
                    attempts: int) -> None:
        # CLOCK_MONOTONIC is one clock for every process of the machine, so the master
        # gets the exact start even when it reads the pipe a little later.
        # Queues contain no spaces (validated); the job name goes last, so it may.
        self._send(f"S {job_id} {timeout!r} {attempts} {time.monotonic()!r} {queue} {name}")

    def job_finished(self, job_id: str) -> None:
        self._send(f"E {job_id} {time.monotonic()!r}")


@dataclass(frozen=True)
class Event:
    kind: str  # "ready", "started", "finished"
    job_id: str = ""
    timeout: float = 0.0
    queue: str = ""
    name: str = ""
    attempts: int = 0
    generation: float | None = None
    at: float = 0.0  # the child's monotonic clock when it happened


def parse_lines(buffer: bytes) -> tuple[list[Event], bytes]:
    """Complete events in buffer, and the unfinished rest to keep for the next read."""
    *lines, rest = buffer.split(b"\n")
    events = []
    for raw in lines:
        parts = raw.decode(errors="replace").split(" ", 6)
        try:
            if parts[0] == "R":
                generation = None if len(parts) < 2 or parts[1] == "-" else float(parts[1])
                events.append(Event("ready", generation=generation))
            elif parts[0] == "S" and len(parts) == 7:
                events.append(Event("started", parts[1], float(parts[2]), parts[5], parts[6],
                                    int(parts[3]), at=float(parts[4])))
            elif parts[0] == "E" and len(parts) == 3:
                events.append(Event("finished", parts[1], at=float(parts[2])))
        except ValueError:
            continue
    return events, rest
