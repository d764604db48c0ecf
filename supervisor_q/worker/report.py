"""The child -> master report pipe: ready, job started (with its timeout and wait), job
finished (with its outcome).

One short line per event: a kind letter, numbers, then the strings (job id, queue,
name) as JSON, escaped to ASCII: an id may hold spaces, newlines or any bytes and
still cannot break the line. A job's finish may be held back (hold_finishes) and
written with the next job's start, in one os.write: one small syscall per job, and one
wake-up of the master, instead of two. The master reads the lines to know each child's current job
and deadline, and counts the outcomes for metrics (observe/). Lines of the older shape
(a start without the wait, a finish without the outcome) still parse: wait 0, outcome
"done".

A child with a job slot (jobslot.py, worker/slotreport.py) writes no S or E line: its
current job is in shared memory, and its finished jobs go in summaries, an M line of
compact JSON: {"w": [[queue, name, [wait, ...]], ...], "r": [[queue, name, outcome,
[runtime, ...]], ...]} (summary_line, parse_summary). Imports only MAX_SECONDS (the
longest seconds any value may say) from the package.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote  # the C escaper: ~100 ns
from typing import Protocol

from supervisor_q.queue.flowstate import MAX_SECONDS  # also the longest wait or runtime

_unquote = json.JSONDecoder().decode
_scan = json.JSONDecoder().scan_once  # the C scanner alone: one value from an index


# What a finished job's report may say; the master adds "timeout", "memory", "lost" and
# "stopped" for jobs whose child it killed or saw die (observe/counters.py).
OUTCOMES = frozenset({"done", "failed", "released", "timeout"})


class Reporter(Protocol):
    def ready(self, generation: float | None) -> None: ...
    def job_started(self, job_id: str, name: str, queue: str, timeout: float,
                    attempts: int, wait: float = 0.0) -> None: ...
    def job_finished(self, job_id: str, outcome: str = "done") -> None: ...
    def job_refused(self, job_id: str, name: str, queue: str, attempts: int,
                    wait: float = 0.0) -> None: ...
    def hold_finishes(self, margin: float | None) -> None: ...
    def flush(self) -> None: ...


class NullReporter:
    """For `supervisor-q work` without a master."""

    def ready(self, generation: float | None) -> None:
        pass

    def job_started(self, job_id: str, name: str, queue: str, timeout: float,
                    attempts: int, wait: float = 0.0) -> None:
        pass

    def job_finished(self, job_id: str, outcome: str = "done") -> None:
        pass

    def job_refused(self, job_id: str, name: str, queue: str, attempts: int,
                    wait: float = 0.0) -> None:
        pass

    def hold_finishes(self, margin: float | None) -> None:
        pass

    def flush(self) -> None:
        pass


class PipeReporter:
    """Writes events to the master's end of a pipe; a dead master is ignored here
    (the parent-death signal ends the child).

    With hold_finishes(margin), a finish is held back and written with the next start,
    or at flush(), which the worker calls before anything that may take long (a blocking
    wait, a sleep, a backoff, a call other than the reserve, its exit). Only a job whose
    deadline is more than margin seconds away is held, margin being longer than the
    worker's Redis calls before the next start can take: the master, which kills a
    child whose job runs past its deadline, never sees a finished job run late. The
    finish carries its own time, so runtimes and metrics are unchanged."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.margin: float | None = None  # hold a finish this far from its deadline
        self.held = ""  # a finish line not written yet
        self.deadline = 0.0  # the running job's deadline, monotonic; 0: none

    def hold_finishes(self, margin: float | None) -> None:
        self.margin = margin

    def flush(self) -> None:
        if self.held:
            self._send("")

    def _send(self, line: str) -> None:
        data, self.held = self.held + line, ""
        write_lines(self.fd, data)

    def ready(self, generation: float | None) -> None:
        self._send("R -\n" if generation is None else f"R {generation!r}\n")

    def job_started(self, job_id: str, name: str, queue: str, timeout: float,
                    attempts: int, wait: float = 0.0) -> None:
        # CLOCK_MONOTONIC is one clock for every process of the machine, so the master
        # gets the exact start even when it reads the pipe a little later (and the
        # runtime of a job is the difference of its two report times).
        now = time.monotonic()
        self.deadline = now + timeout if timeout > 0 else 0.0
        self._send(_start_line(job_id, name, queue, timeout, attempts, now, wait))

    def job_refused(self, job_id: str, name: str, queue: str, attempts: int,
                    wait: float = 0.0) -> None:
        """A job failed before it started (its payload unreadable, its job unknown): a
        start and a failed finish in one write, so the master counts it (metrics, alert
        rates) as a failed job; name is what its payload says, or "(unreadable)"."""
        now = time.monotonic()
        self._send(_start_line(job_id, name, queue, 0.0, attempts, now, wait)
                   + _finish_line(job_id, "failed", now))

    def job_finished(self, job_id: str, outcome: str = "done") -> None:
        now = time.monotonic()
        line = _finish_line(job_id, outcome, now)
        if self.margin is not None and (not self.deadline or self.deadline - now > self.margin):
            self.held += line
        else:
            self._send(line)


def write_lines(fd: int, lines: str) -> None:
    """Write report lines to the master's pipe; a dead master is ignored (the
    parent-death signal ends the child)."""
    data = lines.encode()
    try:
        while data:  # a line past PIPE_BUF may be written in parts: never lose a part
            data = data[os.write(fd, data):]
    except OSError:
        pass


def _start_line(job_id: str, name: str, queue: str, timeout: float, attempts: int,
                now: float, wait: float) -> str:
    return (f"S {timeout!r} {attempts} {now!r} "
            f"[{_quote(job_id)},{_quote(queue)},{_quote(name)},{max(0.0, wait):.3f}]\n")


def _finish_line(job_id: str, outcome: str, now: float) -> str:
    return f"E {now!r} {outcome} {_quote(job_id)}\n"


# A job slot child's summary (M line): waits per (queue, name), runtimes per (queue,
# name, outcome); every group holds at least one value.
Waits = list[tuple[str, str, list[float]]]
Runtimes = list[tuple[str, str, str, list[float]]]
Summary = tuple[Waits, Runtimes]


def summary_line(waits: dict[tuple[str, str], list[float]],
                 runtimes: dict[tuple[str, str, str], list[float]]) -> str:
    """The M line of what a child tallied: compact JSON escaped to ASCII (any id or name
    bytes keep it one line)."""
    body = json.dumps({"w": [[q, n, v] for (q, n), v in waits.items()],
                       "r": [[q, n, o, v] for (q, n, o), v in runtimes.items()]},
                      separators=(",", ":"))
    return f"M {body}\n"


def parse_summary(text: str) -> Summary:
    """An M line's JSON, checked to the last value; raises ValueError or TypeError."""
    value = _json(text)
    if not isinstance(value, dict) or set(value) != {"w", "r"}:
        raise ValueError("a summary holds w and r")
    waits, runtimes = value["w"], value["r"]
    if not isinstance(waits, list) or not isinstance(runtimes, list):
        raise TypeError("expected lists of groups")
    out_waits: Waits = []
    for group in waits:
        if not isinstance(group, list) or len(group) != 3:
            raise ValueError("a wait group is [queue, name, waits]")
        out_waits.append((_str(group[0]), _str(group[1]), _seconds(group[2])))
    out_runtimes: Runtimes = []
    for group in runtimes:
        if not isinstance(group, list) or len(group) != 4:
            raise ValueError("a runtime group is [queue, name, outcome, runtimes]")
        if group[2] not in OUTCOMES:
            raise ValueError(f"unknown outcome {str(group[2])[:20]!r}")
        out_runtimes.append((_str(group[0]), _str(group[1]), group[2], _seconds(group[3])))
    return out_waits, out_runtimes


def _seconds(values: object) -> list[float]:
    if not isinstance(values, list) or not values:
        raise ValueError("expected a list of seconds")
    seconds = [_wait(v) for v in values]
    if max(seconds) > MAX_SECONDS:  # inf or absurd: counters take milliseconds as ints
        raise ValueError("a wait or runtime past MAX_SECONDS")
    return seconds


@dataclass(slots=True)
class Event:  # not frozen: a frozen dataclass's __init__ costs a setattr call per field
    kind: str  # "ready", "started", "finished", "summary", or "garbled" (unreadable)
    job_id: str = ""
    timeout: float = 0.0
    queue: str = ""
    name: str = ""
    attempts: int = 0
    generation: float | None = None
    at: float = 0.0  # the child's monotonic clock when it happened
    wait: float = 0.0  # started: seconds from ready (dispatch or release) to reserve
    outcome: str = "done"  # finished: one of OUTCOMES
    line: bytes = b""  # garbled: the line's head, to log; its kind letter is line[:1]
    summary: Summary | None = None  # summary: a job slot child's finished jobs


def parse_lines(buffer: bytes) -> tuple[list[Event], bytes]:
    """Complete events in buffer, and the unfinished rest to keep for the next read.
    A line that cannot be read becomes a "garbled" event, never nothing."""
    *lines, rest = buffer.split(b"\n")
    events = []
    for raw in lines:
        try:
            events.append(_parse(raw.decode()))
        except (ValueError, TypeError, LookupError, RecursionError):
            events.append(Event("garbled", line=raw[:200]))
    return events, rest


def _json(text: str) -> object:
    """The JSON value text holds, as _unquote reads it; the C scanner first (a report
    line is compact JSON), _unquote for anything else (its error, or what it allows)."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else _unquote(text)


def _id(quoted: str) -> str:
    """A finish's quoted id: most are plain printable ASCII, taken as they are."""
    if (quoted.count('"') == 2 and quoted[0] == quoted[-1] == '"' and quoted.isascii()
            and quoted.isprintable() and "\\" not in quoted):
        return quoted[1:-1]
    return _str(_json(quoted))


def _parse(line: str) -> Event:
    # Events are made with every field by position: keywords cost twice as much, and
    # a busy master reads two lines per job of every child.
    kind, _, rest = line.partition(" ")
    if kind == "E":
        at, _, job_id = rest.partition(" ")
        outcome = "done"
        if job_id[:1] != '"':  # the newer shape: E <at> <outcome> <"id">
            outcome, _, job_id = job_id.partition(" ")
            if outcome not in OUTCOMES:
                raise ValueError(f"unknown outcome {outcome[:20]!r}")
        return Event("finished", _id(job_id), 0.0, "", "", 0, None, float(at), 0.0, outcome)
    if kind == "S":
        timeout, attempts, at, strings = rest.split(" ", 3)
        values = _json(strings)
        if not isinstance(values, list) or len(values) not in (3, 4):
            raise ValueError("a start names id, queue, name and maybe the wait")
        job_id, queue, name = values[:3]
        wait = _wait(values[3]) if len(values) == 4 else 0.0
        return Event("started", _str(job_id), float(timeout), _str(queue), _str(name),
                     int(attempts), None, float(at), wait)
    if kind == "R":
        return Event("ready", generation=None if rest == "-" else float(rest))
    if kind == "M":
        return Event("summary", summary=parse_summary(rest))
    raise ValueError(f"unknown report kind {kind!r}")


def _wait(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise TypeError("expected a wait in seconds")
    return float(value)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value
