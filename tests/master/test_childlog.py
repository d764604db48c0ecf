"""A child's lines in the master's text log: the lines of one read formatted at once
(master/childlog.py) give the same bytes as one logging record per line, in one write;
any logging setup but the plain one goes through logging."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from supervisor_q.logs import TEXT_FORMAT, JobFilter, LineHandler, TextFormatter, bind_job
from supervisor_q.master.childlog import plain_handler
from supervisor_q.master.output import OutputCapture, Stream
from supervisor_q.master.wakeup import Wakeup

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d ", re.M)

LINES = (b"plain line\n"
         b"INFO supervisor_q.jobs: job 1 bench.noop on bench: started (attempt 1)\n"
         b"WARNING app: careful %s %d\n"
         b"DEBUG app.sub: fine detail\n"
         b"ERROR not a logger name\n"
         b"\x1b[31mred\x1b[0m bell\x07 cr\r\n"
         b"crlf\r\n"
         b"bad utf-8 \xff\xfe \xe2\x82 cut\n"
         b"tab\there \xc3\xa9t\xc3\xa9\n"
         b"\n"
         b"CRITICAL x: y")  # no newline: kept as the partial line


class Writes(io.StringIO):
    """Counts the writes the handler makes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


@contextmanager
def plain_logging(kind: type[logging.StreamHandler] = LineHandler,
                  ) -> Iterator[logging.StreamHandler]:
    """The root logger as configure_logging leaves it (text), writing to a Writes; in the
    test's body (pytest adds its own handlers to the root for each phase)."""
    root = logging.getLogger()
    saved = list(root.handlers)
    handler = kind(Writes())
    handler.setFormatter(TextFormatter(TEXT_FORMAT))
    handler.addFilter(JobFilter())
    root.handlers = [handler]
    try:
        yield handler
    finally:
        root.handlers = saved


def _capture(data: bytes) -> None:
    """data read by an OutputCapture as a child's stderr, as the master reads it."""
    with Wakeup() as wakeup:
        capture = OutputCapture(wakeup)
        try:
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            os.write(write_end, data)
            stream = Stream(("w", 1, "stderr"), "w#1", 4321, None)
            assert capture.read_fd(stream, read_end, None) is False  # nothing more yet
            os.close(write_end)
            os.close(read_end)
        finally:
            capture.close()


def _both(handler: logging.StreamHandler) -> tuple[str, str, int]:
    """(at once, line by line, writes at once): line by line is forced by a second
    handler on the way (which takes nothing: its level is above every line)."""
    out: Writes = handler.stream  # type: ignore[assignment]
    _capture(LINES)
    fast, writes = out.getvalue(), out.writes
    out.seek(0)
    out.truncate()
    other = logging.NullHandler(level=logging.CRITICAL + 1)
    logging.getLogger("supervisor_q").addHandler(other)
    try:
        _capture(LINES)
    finally:
        logging.getLogger("supervisor_q").removeHandler(other)
    return ISO_MS.sub("T ", fast), ISO_MS.sub("T ", out.getvalue()), writes


@pytest.mark.parametrize("kind", [LineHandler, logging.StreamHandler])
def test_a_reads_lines_at_once_are_the_records_bytes_in_one_write(
        kind: type[logging.StreamHandler]) -> None:
    with plain_logging(kind) as handler:
        fast, slow, writes = _both(handler)
    assert fast == slow
    assert writes == 1
    lines = fast.splitlines()
    assert len(lines) == 10  # the partial last line waits for its newline
    assert lines[0] == "T INFO [4321] w#1 stderr: plain line"
    assert lines[1] == ("T INFO [4321] w#1 stderr: supervisor_q.jobs: job 1 bench.noop on "
                        "bench: started (attempt 1)")
    assert lines[2] == "T WARNING [4321] w#1 stderr: app: careful %s %d"
    assert lines[3] == "T DEBUG [4321] w#1 stderr: app.sub: fine detail"
    assert lines[4] == "T ERROR [4321] w#1 stderr: ERROR not a logger name"
    assert lines[5] == r"T INFO [4321] w#1 stderr: \x1b[31mred\x1b[0m bell\x07 cr"
    assert lines[6] == "T INFO [4321] w#1 stderr: crlf"
    assert lines[7] == "T INFO [4321] w#1 stderr: bad utf-8 \ufffd\ufffd \ufffd cut"
    assert lines[8] == "T INFO [4321] w#1 stderr: tab\there \u00e9t\u00e9"
    assert lines[9] == "T INFO [4321] w#1 stderr: "


def test_the_handlers_level_drops_the_same_lines() -> None:
    with plain_logging() as handler:
        handler.setLevel(logging.WARNING)
        fast, slow, writes = _both(handler)
    assert fast == slow and writes == 1
    assert [line.split()[1] for line in fast.splitlines()] == ["WARNING", "ERROR"]


def test_any_other_logging_setup_goes_through_logging() -> None:
    with plain_logging() as handler:
        _other_setups(handler)


def _other_setups(plain_root: logging.StreamHandler) -> None:
    log = logging.getLogger("supervisor_q.output")
    ring = logging.NullHandler()
    logging.getLogger().addHandler(ring)
    try:
        assert plain_handler(log, ring) is plain_root
        assert plain_handler(log, logging.NullHandler()) is None  # an unknown handler
        log.addFilter(JobFilter())
        assert plain_handler(log, ring) is None
        log.removeFilter(log.filters[0])
        plain_root.setFormatter(TextFormatter("%(message)s"))
        assert plain_handler(log, ring) is None
        plain_root.setFormatter(TextFormatter(TEXT_FORMAT))
        bind_job("42", "app.send", "mail")  # its records get the job's suffix
        try:
            assert plain_handler(log, ring) is None
        finally:
            bind_job(None)
        log.propagate = False  # no handler at all: logging's last resort
        try:
            assert plain_handler(log, ring) is None
        finally:
            log.propagate = True
        assert plain_handler(log, ring) is plain_root
    finally:
        logging.getLogger().removeHandler(ring)
