"""Supervisor's log keys of a program (stdout_logfile, stderr_logfile, redirect_stderr,
*_logfile_maxbytes, logfile_backups) and `log_jobs`: a mixin of the program models.

A program without a log file sends its children's lines to the master's log, tagged
with the process (master/output.py). Sizes take Supervisor's spelling: 50MB, 10KB, 1GB
or a number of bytes; 0 turns rotation off. Imports nothing from the package.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from supervisor_q.config.substitute import check_placeholders

DEFAULT_MAXBYTES = 50 * 1024 * 1024  # Supervisor's default
DEFAULT_BACKUPS = 10  # Supervisor's default
_SIZE = re.compile(r"^\s*(\d+)\s*(KB|MB|GB|B)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}
LogPath = Annotated[str, Field(strict=True, min_length=1)]


def byte_size(value: Any) -> Any:
    """50MB -> 52428800; a plain number is bytes. Anything else is left to pydantic."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(f"must be a size like 50MB, 10KB or a number of bytes, "
                             f"got {value!r}")
        return int(match.group(1)) * _UNITS[(match.group(2) or "B").upper()]
    return value


def _absolute(value: str | None) -> str | None:
    if value is not None and not value.startswith("/"):
        raise ValueError(f"must be an absolute path, got {value!r}")
    return value if value is None else check_placeholders(value)


class LogKeys(BaseModel):
    """Where a program's output goes; see README.md "Program output and logs"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stdout_logfile: LogPath | None = None  # default: the master's log, tagged
    stderr_logfile: LogPath | None = None  # default: the master's log, tagged
    redirect_stderr: Annotated[bool, Field(strict=True)] = False  # stderr into stdout
    logfile_maxbytes: Annotated[int, Field(strict=True, ge=0)] = DEFAULT_MAXBYTES
    stdout_logfile_maxbytes: Annotated[int, Field(strict=True, ge=0)] | None = None
    stderr_logfile_maxbytes: Annotated[int, Field(strict=True, ge=0)] | None = None
    logfile_backups: Annotated[int, Field(strict=True, ge=0)] = DEFAULT_BACKUPS
    log_jobs: Annotated[bool, Field(strict=True)] = True  # a line at each job's start, end

    _sizes = field_validator("logfile_maxbytes", "stdout_logfile_maxbytes",
                             "stderr_logfile_maxbytes", mode="before")(byte_size)
    _paths = field_validator("stdout_logfile", "stderr_logfile")(_absolute)

    def logfile(self, stream: str) -> str | None:
        """The file a stream goes to (redirect_stderr: stderr shares stdout's), or None."""
        if stream == "stderr" and not self.redirect_stderr:
            return self.stderr_logfile
        return self.stdout_logfile

    def maxbytes(self, stream: str) -> int:
        own = self.stderr_logfile_maxbytes if stream == "stderr" else self.stdout_logfile_maxbytes
        return self.logfile_maxbytes if own is None else own
