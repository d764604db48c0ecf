"""Logging to stderr, one line per event: time (ISO 8601 with milliseconds and the UTC
offset), level, pid, logger, message (journald-friendly), or JSON lines with
--log-format json. A record logged inside a job carries job_id, job and queue (set by
jobs/context.py through bind_job; JobFilter copies them onto every record).

A worker writes two lines per job: info_line writes them through the one LineHandler
without a LogRecord (a tenth of the cost), byte for byte as a record would read, when
nothing else (a handler, filter or record factory of the application's) would see that
record; a line may be held back and written with the next one, in one write."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time
from datetime import datetime

from supervisor_q import procid

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
# A captured child's own lines when the master's log carries them: the master's record
# adds the time and the child's pid, so the child writes neither.
CHILD_FORMAT = "%(levelname)s %(name)s: %(message)s"
JOB_FIELDS = ("job_id", "job", "queue")
JOBS_LOGGER = "supervisor_q.jobs"  # worker/joblog.py: its lines name the job already
# Attributes a captured output line carries (master/output.py), shown in JSON as is.
OUTPUT_FIELDS = ("program", "stream")

_job: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar(
    "supervisor_q_log_job", default=None)


def bind_job(job_id: str | None, name: str = "", queue: str = "") -> None:
    """Records logged from now on in this context carry this job (None: no job)."""
    _job.set(None if job_id is None else (job_id, name, queue))


_second: tuple[int, str, str] = (-1, "", "")  # the last whole second: date-time, offset


def _local_second(whole: int) -> tuple[int, str, str]:
    """The whole second's local date-time and UTC offset, worked out once per second."""
    global _second
    if whole != _second[0]:  # (DST-aware)
        shown = datetime.fromtimestamp(whole).astimezone().isoformat()
        _second = (whole, shown[:19], shown[19:])
    return _second


# The last millisecond's text and the instants [lo, hi) that surely read as it: that
# millisecond less 10 µs at each end (float rounding), only where a float's step is far
# finer than that (|created| < 2**32 s: under 0.5 µs). Job lines come many per millisecond.
_milli: tuple[float, float, str] = (0.0, 0.0, "")


def iso_time(created: float) -> str:
    """2026-11-25T13:21:52.123+00:00: local time, milliseconds, the UTC offset."""
    global _milli
    lo, hi, text = _milli
    if lo <= created < hi:
        return text
    whole = int(created // 1)
    second = _second
    if whole != second[0]:
        second = _local_second(whole)
    milli = int((created - whole) * 1000)
    text = f"{second[1]}.{milli:03d}{second[2]}"
    if -_EXACT < created < _EXACT:
        start = whole + milli / 1000
        _milli = (start + 1e-5, start + 0.00099, text)
    return text


_EXACT = 2.0**32


def clock_time(created: float) -> str:
    """13:21:52: the local time of day (time.strftime("%H:%M:%S"), once per second)."""
    return _local_second(int(created // 1))[1][11:]


class JobFilter(logging.Filter):
    """Copies the current job (if any) onto each record as job_id, job and queue."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = _job.get()
        if job is not None and not hasattr(record, "job_id"):
            record.job_id, record.job, record.queue = job
        return True


class TextFormatter(logging.Formatter):
    """The text line; a record of a job ends with (job_id=... job=... queue=...)."""

    _info: tuple[int, str, bool, str | None] = (-1, "", False, None)  # see info_rest

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return iso_time(record.created)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if getattr(record, "job_id", None) is not None and record.name != JOBS_LOGGER:
            line += " ({})".format(" ".join(f"{k}={getattr(record, k)}" for k in JOB_FIELDS))
        return line

    def head(self, level: str, logger: str, pid: int, created: float) -> str | None:
        """What format() writes before a record's message ("<time> INFO [pid] name: "),
        for records made without logging (info_line, master/childlog.py); None for a
        format other than supervisor-q's two."""
        if self._fmt == TEXT_FORMAT:
            return f"{iso_time(created)} {level} [{pid}] {logger}: "
        if self._fmt == CHILD_FORMAT:
            return f"{level} {logger}: "
        return None

    def info_rest(self, logger: str) -> tuple[int, str, bool, str | None]:
        """What an INFO line of logger has after its time (" INFO [pid] name: "), or all
        of its head for CHILD_FORMAT (timed False), None for another format; kept on the
        formatter for info_line, made again in a forked child and for another logger."""
        pid = procid.pid()
        rest = self.head("INFO", logger, pid, 0.0)
        timed = self._fmt == TEXT_FORMAT
        if rest is not None and timed:
            rest = rest[rest.index(" "):]  # the time has no space
        self._info = (_forks, logger, timed, rest)
        return self._info


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "time": iso_time(record.created), "level": record.levelname.lower(),
            "pid": record.process, "logger": record.name, "message": record.getMessage()}
        for key in JOB_FIELDS + OUTPUT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                body[key] = value
        label = getattr(record, "label", None)
        if label is not None:  # a child's output line: which process (emails#2)
            body["process"] = label
        more = getattr(record, "fields", None)  # a child's own JSON line, merged
        if isinstance(more, dict):  # its own time, level and logger; the master's labels
            body = {**body, **more, **{k: body[k] for k in ("pid", "program", "process",
                                                          "stream") if k in body}}
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body)

    def info_line(self, logger: str, message: str, job: tuple[str, str, str]) -> str:
        """An INFO line of logger for job (id, name, queue), as format() would write it."""
        return json.dumps({"time": iso_time(time.time()), "level": "info",
                           "pid": procid.pid(), "logger": logger, "message": message,
                           **dict(zip(JOB_FIELDS, job, strict=True))})


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler: a line per record, written at once, after the lines held
    back before it (write_line(hold=True)): they stay in order with every other record.
    Held lines go out with the next line not held, at release() or flush(), and never
    wait for more than HOLD_LINES lines."""

    HOLD_LINES = 64

    def __init__(self, stream: object) -> None:
        super().__init__(stream)  # type: ignore[arg-type]
        self.held: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - as StreamHandler: report, never raise
            self.handleError(record)
            return
        self.write_line(line, hold=False)

    def write_line(self, line: str, *, hold: bool) -> None:
        """Write one formatted line (hold: maybe later, with the next one)."""
        with self.lock:  # type: ignore[union-attr]
            held = self.held
            held.append(line)
            if not hold or len(held) >= self.HOLD_LINES:
                self._write_held()

    def _write_held(self) -> None:
        held, self.held = self.held, []
        held.append("")  # the last line's end
        try:
            self.stream.write("\n".join(held))
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr: the lines are lost
            pass

    def release(self) -> None:
        """Write the lines held back now."""
        if self.held:
            with self.lock:  # type: ignore[union-attr]
                if self.held:
                    self._write_held()

    def flush(self) -> None:
        self.release()
        super().flush()


def configure_logging(fmt: str = "text", level: str | None = None) -> None:
    """Install one stderr handler on the root logger (replacing earlier ones)."""
    handler = LineHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    handler.addFilter(JobFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("SUPERVISOR_Q_LOG_LEVEL", "INFO").upper())


def json_logging() -> bool:
    """True when the root logger's first handler writes JSON lines."""
    handlers = logging.getLogger().handlers
    return bool(handlers) and isinstance(handlers[0].formatter, JsonFormatter)


def use_child_format() -> None:
    """In a child whose stderr the master's log carries: drop the time and pid (the
    master's record has them); JSON lines stay whole (the master merges them)."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(TextFormatter(CHILD_FORMAT))


def info_line(logger: logging.Logger, message: str, job: tuple[str, str, str], *,
              hold: bool = False) -> bool:
    """Write message as an INFO line of logger about job (id, name, queue) straight
    through the root's LineHandler, held back if hold; False (nothing written) when a
    record would meet more than that handler and its JobFilter, or another formatter:
    the caller logs it as a record then."""
    if not logger.isEnabledFor(_INFO):
        return True  # the record would be dropped too
    handler = _line_handler(logger)
    if handler is None:
        return False
    formatter = handler.formatter
    if type(formatter) is TextFormatter:
        cached = formatter._info
        if cached[0] != _forks or cached[1] != logger.name:
            cached = formatter.info_rest(logger.name)
        rest = cached[3]
        if rest is None:
            return False
        if cached[2]:
            now = time.time()
            lo, hi, stamp = _milli  # iso_time(now), inlined
            line = f"{stamp if lo <= now < hi else iso_time(now)}{rest}{message}"
        else:
            line = rest + message
    elif type(formatter) is JsonFormatter:
        line = formatter.info_line(logger.name, message, job)
    else:
        return False
    handler.write_line(line, hold=hold)
    return True


def _line_handler(logger: logging.Logger) -> LineHandler | None:
    """The LineHandler a record of logger would meet alone (with only its JobFilter),
    made by the plain LogRecord factory; None otherwise. Asked at every line: the
    application may add a handler or filter any time. (sole_handler, inlined.)"""
    if logging.getLogRecordFactory() is not _RECORD:
        return None
    root = logger.parent
    if (root is logging.root and logger.propagate and not logger.handlers
            and not logger.filters and not root.filters and len(root.handlers) == 1):
        handler: logging.Handler | None = root.handlers[0]  # the usual shape, at once
    else:
        handler = sole_handler(logger)
    if type(handler) is not LineHandler or handler.level > _INFO:
        return None
    for only in handler.filters:
        if type(only) is not JobFilter:
            return None
    return handler


_INFO = logging.INFO
_RECORD = logging.LogRecord
_forks = 0  # forks since import: a formatter's cached pid (info_rest) is then stale


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


def sole_handler(logger: logging.Logger,
                 skip: logging.Handler | None = None) -> logging.Handler | None:
    """The one handler (skip aside) a record of logger reaches, going up the loggers
    as Logger.callHandlers does; None if it reaches several or none, or a logger on the
    way has a filter."""
    found: logging.Handler | None = None
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters:
            return None
        for handler in node.handlers:
            if handler is skip:
                continue
            if found is not None:
                return None
            found = handler
        node = node.parent if node.propagate else None
    return found


def release_lines() -> None:
    """Write the lines held back (info_line(hold=True)) now."""
    for handler in logging.root.handlers:
        if type(handler) is LineHandler:
            handler.release()
