"""Convert Supervisor's [program:x] sections into supervisor-q program files.

Each Supervisor key becomes the supervisor-q key of the same meaning; what has no
equivalent is written as a comment at the end of the file and reported as a warning;
what needs no key (stopasgroup=true: supervisor-q always signals the whole process
group) is dropped with a note. Queue-worker commands stay command programs, with a
suggested worker program beside them (config/supervisord_workers.py).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from supervisor_q.config.schema import NAME_PATTERN
from supervisor_q.config.supervisord import Section, byte_size, expander, parse_environment
from supervisor_q.config.supervisord_workers import suggest_worker

SIGNALS = ("TERM", "INT", "QUIT", "HUP", "KILL", "USR1", "USR2")
LOG_FILES = ("stdout_logfile", "stderr_logfile")
LOG_SIZES = ("stdout_logfile_maxbytes", "stderr_logfile_maxbytes")
LOG_BACKUPS = ("stdout_logfile_backups", "stderr_logfile_backups")  # one logfile_backups here


@dataclass
class Converted:
    """One program file to write, and what to tell about it."""

    name: str
    source: str  # "FILE [program:x]"
    values: dict[str, Any] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)  # options kept as comments
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    worker: tuple[str, dict[str, Any]] | None = None  # (what runs, suggested program)

    def text(self) -> str:
        lines = [f"# Converted by `supervisor-q import-supervisord` from {self.source}"]
        lines += [f"# {note}" for note in self.notes]
        for key, value in self.values.items():
            flow = None if isinstance(value, list | dict) else False  # `k: [a, b]`, `k: v`
            lines.append(yaml.safe_dump({key: value}, default_flow_style=flow,
                                        sort_keys=False, width=10_000).rstrip())
        if self.comments:
            lines.append("# Not converted (no supervisor-q equivalent):")
            lines += [f"# {line}" for line in self.comments]
        return "\n".join(lines) + "\n"


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _autorestart(value: str) -> bool | str:
    return "unexpected" if value.strip().lower() == "unexpected" else _bool(value)


def _signal(value: str) -> str:
    name = value.strip().upper().removeprefix("SIG")
    if name not in SIGNALS:
        raise ValueError(f"supervisor-q stops with one of {', '.join(SIGNALS)}")
    return name


def _whole(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"{value.strip()[:40]!r} is not a whole number") from None


def _umask(value: str) -> str:
    digits = value.strip()
    if not digits or any(c not in "01234567" for c in digits) or int(digits, 8) > 0o777:
        raise ValueError(f"{digits[:40]!r} is not an octal umask such as 022")
    return digits


def _exitcodes(value: str) -> list[int]:
    return [int(code) for code in value.split(",") if code.strip()]


def _logfile(value: str) -> str | None:
    """A log path; AUTO, NONE and the console mean the default (the master's log)."""
    stripped = value.strip()
    if stripped.upper() in ("AUTO", "NONE") or stripped in ("/dev/stdout", "/dev/stderr",
                                                            "/dev/fd/1", "/dev/fd/2"):
        return None
    return stripped


CONVERTERS: dict[str, Callable[[str], Any]] = {
    "command": str.strip, "directory": str.strip, "user": str.strip, "umask": _umask,
    "numprocs": _whole, "numprocs_start": _whole, "priority": _whole, "startsecs": _whole,
    "startretries": _whole, "stopwaitsecs": _whole, "autostart": _bool,
    "redirect_stderr": _bool,
    "autorestart": _autorestart, "stopsignal": _signal, "exitcodes": _exitcodes,
    "environment": parse_environment,
    **{key: _logfile for key in LOG_FILES}, **{key: byte_size for key in LOG_SIZES},
    **{key: _whole for key in LOG_BACKUPS},
}
ALIASES = {"logfile": "stdout_logfile", "logfile_maxbytes": "stdout_logfile_maxbytes",
           "logfile_backups": "stdout_logfile_backups"}  # Supervisor's older names


def _dropped(key: str, value: str, out: Converted) -> bool:
    """Keys that need nothing in supervisor-q: a note, or a warning where the meaning
    changes. True when handled."""
    if key in ("stopasgroup", "killasgroup"):
        if not _bool(value):
            out.warnings.append(f"{key}=false: supervisor-q always signals the whole "
                                "process group")
        return True
    if key == "process_name":
        out.notes.append(f"process_name={value}: supervisor-q names processes "
                         f"{out.name}#1 to #numprocs")
        return True
    return False


def _program_name(raw: str, out: Converted) -> str:
    if re.match(NAME_PATTERN, raw):
        return raw
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", raw) or "program"
    out.warnings.append(f"name {raw!r} becomes {name!r} ([A-Za-z0-9_.-] only)")
    return name


def convert_program(section: Section, group: str | None) -> Converted:
    """One [program:x] section as a supervisor-q command program."""
    out = Converted(name="", source=section.label)
    out.name = _program_name(section.name, out)
    expand = expander(section, group)
    if group:
        out.values["group"] = group
    for raw_key, raw_value in section.options.items():
        key = ALIASES.get(raw_key, raw_key)
        value = expand(key, raw_value)
        if _dropped(key, value, out):
            continue
        if key not in CONVERTERS:
            out.comments.append(f"{raw_key}={raw_value}")
            out.warnings.append(f"{raw_key}: no equivalent, kept as a comment")
            continue
        try:
            converted = CONVERTERS[key](value)
        except ValueError as exc:
            out.comments.append(f"{raw_key}={raw_value}")
            out.warnings.append(f"{raw_key}: {exc}; kept as a comment")
            continue
        if converted is not None:
            out.values[key] = converted
    out.warnings += expand.problems
    _finish(out)
    return out


def _merge_backups(out: Converted) -> None:
    """Supervisor keeps backups per stream; supervisor-q has one `logfile_backups`."""
    found = [out.values.pop(key) for key in LOG_BACKUPS if key in out.values]
    if found:
        out.values["logfile_backups"] = max(found)
        if len(set(found)) > 1:
            out.warnings.append(f"stdout/stderr_logfile_backups differ: logfile_backups "
                                f"{max(found)} for both")


def _finish(out: Converted) -> None:
    """Order the keys (command first), check the essentials, suggest a worker."""
    _merge_backups(out)
    # Supervisor's default; supervisor-q's is true (restart after any exit)
    out.values.setdefault("autorestart", "unexpected")
    if "process_num" in repr(out.values) and "numprocs_start" not in out.values:
        out.values["numprocs_start"] = 0  # Supervisor's default: the same ports and files
    command = out.values.pop("command", None)
    if not command:
        out.warnings.append("no command: the program file will not load")
        return
    out.values = {"command": command, **out.values}
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        out.warnings.append(f"command: {exc}")
        return
    out.worker = suggest_worker(argv, out.name, out.values.get("numprocs", 1))
