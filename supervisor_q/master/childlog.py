"""A child's output lines in the master's text log, many per read (output.py).

Each line of a child is a record of the master's log (`... INFO [pid] w#1 stderr: ...`).
Through logging, a record costs a LogRecord, a filter, a formatter with its own clock
reading and a write(2): ~30 µs, twice per job of a worker that logs its jobs. When the
master's logging is the plain setup (logs.configure_logging's one stderr handler, a
LineHandler or a StreamHandler, with the text format, and the master's RingHandler,
which leaves children's lines to their own rings), the lines of one read are formatted
here instead, byte for byte as that handler would, with one time for the read, and
written with one write (a LineHandler's, after the lines it holds). Any other setup
(JSON, another handler, a filter, a level set on a logger on the way) returns None from
plain_handler and the caller makes one record per line, as before.
"""

from __future__ import annotations

import logging
import re
import time

from supervisor_q.logs import (
    JOBS_LOGGER,
    TEXT_FORMAT,
    JobFilter,
    LineHandler,
    TextFormatter,
    sole_handler,
)

# Control characters but tab and newline (lines are split there), each as \xNN.
ESCAPED = {c: f"\\x{c:02x}" for c in (*range(0x09), *range(0x0b, 0x20), 0x7f)}
_CONTROL = bytes(ESCAPED)  # as bytes: in UTF-8 these bytes are only these characters
LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
          "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}
_LOGGER_PREFIX = re.compile(r"[\w.]+: ")  # "name: " of logs.CHILD_FORMAT
_JOB_LINE = f"INFO {JOBS_LOGGER}: "


def child_level(text: str, strip: bool) -> tuple[int, str]:
    """The level of a worker's own log line (logs.CHILD_FORMAT: "LEVEL name: message"),
    so a child's WARNING stays a WARNING in the master's log; INFO for any other line.
    With strip, such a line loses its level word (the master's record shows the level:
    `INFO [pid] w#1 stderr: supervisor_q.jobs: ...`, not `... stderr: INFO supervisor_q...`)."""
    word, _, rest = text.partition(" ")
    level = LEVELS.get(word)
    if level is None:
        return logging.INFO, text
    if strip and _LOGGER_PREFIX.match(rest):
        return level, rest
    return level, text


def text_lines(whole: bytes, escape: bool) -> list[str]:
    """The lines of whole (newline-separated, no newline at its end) as text: a line's
    trailing CRs dropped, undecodable bytes replaced, with escape control characters
    as \\xNN. Decoded at once: a newline is never part of a UTF-8 sequence, so this is
    what decoding line by line gives."""
    text = whole.decode("utf-8", "replace")
    if len(whole.translate(None, _CONTROL)) == len(whole):  # none (a regex takes 10x):
        return text.split("\n")  # the common line, nothing to strip or escape
    lines = [line.rstrip("\r") for line in text.split("\n")]
    return [line.translate(ESCAPED) for line in lines] if escape else lines


def plain_handler(logger: logging.Logger, ring: logging.Handler) -> logging.StreamHandler | None:
    """The one handler logger's records reach when that is configure_logging's text
    handler (ring being the only other one, which skips children's lines), else None."""
    if logger.disabled:
        return None
    handler = sole_handler(logger, skip=ring)
    return handler if handler is not None and _plain(handler) else None  # type: ignore[return-value]


def _plain(handler: logging.Handler) -> bool:
    formatter = handler.formatter
    return (type(handler) in (LineHandler, logging.StreamHandler)
            and type(formatter) is TextFormatter
            and formatter._fmt == TEXT_FORMAT and formatter.datefmt is None
            and all(type(f) is JobFilter for f in handler.filters)
            and not _job_bound(handler))


def _job_bound(handler: logging.Handler) -> bool:
    """Whether the handler's JobFilter would add a job to a record (the master binds
    none; a record with job fields is formatted by logging, with its suffix)."""
    if not handler.filters:
        return False
    probe = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
    handler.filter(probe)
    return hasattr(probe, "job_id")


def write_lines(handler: logging.StreamHandler, logger: logging.Logger, head: str,
                pid: int, lines: list[str]) -> None:
    """Each line as the handler's record of logger would be, `head` being the record's
    name (`w#1 stderr`), the level read from the line (child_level); one write.
    logger: for the record handleError is given if the write fails."""
    formatter: TextFormatter = handler.formatter  # type: ignore[assignment]  (_plain)
    now = time.time()
    prefixes: dict[int, str | None] = {}
    out = []
    for line in lines:
        if line.startswith(_JOB_LINE):  # worker/joblog.py's, most lines: what child_level
            level, text = logging.INFO, line[5:]  # gives, without its regex
        else:
            level, text = child_level(line, strip=True)
        prefix = prefixes.get(level, "")
        if prefix == "":
            # as Logger.handle, which output.py's records go through: the handler's
            # level only (a child's DEBUG line is shown under a master at INFO)
            prefix = prefixes[level] = (formatter.head(logging.getLevelName(level), head, pid,
                                                       now) if level >= handler.level else None)
        if prefix is not None:
            out.append(prefix + text)
    if not out:
        return
    if isinstance(handler, LineHandler):  # after the lines it holds, as its emit()
        handler.write_line("\n".join(out), hold=False)
        return
    out.append("")
    data = handler.terminator.join(out)
    handler.acquire()
    try:
        handler.stream.write(data)
        handler.flush()
    except Exception:  # noqa: BLE001 - as StreamHandler.emit: logging must never raise
        record = logger.makeRecord(head, logging.INFO, __file__, 0, out[0], None, None)
        handler.handleError(record)
    finally:
        handler.release()
