"""Logging to stderr, one line per event: time (ISO 8601 with milliseconds and the UTC
offset), level, pid, logger, message (journald-friendly), or JSON lines with
--log-format json. A record logged inside a job carries job_id, job and queue (set by
jobs/context.py through bind_job; JobFilter copies them onto every record)."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from datetime import datetime

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


def iso_time(created: float) -> str:
    """2026-11-25T13:21:52.123+00:00: local time, milliseconds, the UTC offset."""
    return datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")


class JobFilter(logging.Filter):
    """Copies the current job (if any) onto each record as job_id, job and queue."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = _job.get()
        if job is not None and not hasattr(record, "job_id"):
            record.job_id, record.job, record.queue = job
        return True


class TextFormatter(logging.Formatter):
    """The text line; a record of a job ends with (job_id=... job=... queue=...)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return iso_time(record.created)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if getattr(record, "job_id", None) is not None and record.name != JOBS_LOGGER:
            line += " ({})".format(" ".join(f"{k}={getattr(record, k)}" for k in JOB_FIELDS))
        return line


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


def configure_logging(fmt: str = "text", level: str | None = None) -> None:
    """Install one stderr handler on the root logger (replacing earlier ones)."""
    handler = logging.StreamHandler(sys.stderr)
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
