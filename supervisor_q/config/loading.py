"""Program files (conf.d/*.yaml) -> frozen, validated program configs, and reload plans.

Loading validates every file completely and collects every problem before raising one
`ConfigError`, so a bad edit is reported in full and nothing running is touched
(ARCHITECTURE.md's reliability rule 9). Each problem reads "<path>: <key>: <problem>"
(messages.py words them). The schema, its defaults and the cross-field rules live in
`schema.py`.

This module imports nothing from the supervisor_q package except config/schema.py,
config/messages.py and config/yamlsafe.py (which parses the YAML in bounded time).

Keys (W = worker programs, `queues:`; C = command programs, `command:`):

| key | kinds | type | default | meaning |
|---|---|---|---|---|
| name | W C | str `[A-Za-z0-9_.-]+` | file stem | program name |
| numprocs | W C | int >= 0 | 1 | children to keep running |
| startsecs | W C | seconds >= 0 | 1 | uptime that counts as started |
| startretries | W C | int >= 0 | 3 | quick failures before FATAL |
| stopwaitsecs | W C | seconds >= 0 | W: timeout + 10, C: 10 | grace before SIGKILL |
| schedule | W C | list of {cron, numprocs} | [] | latest rule at or before now wins |
| timezone | W C | IANA name | UTC | zone of the cron rules |
| environment | W C | map str -> str | {} | extra environment for children |
| directory | W C | path | none (master's cwd) | working directory of children |
| autoscale | W | mapping | none | see AutoscaleConfig |
| queues | W | list or "a, b" | required | queues in priority order |
| import | W | list of modules | [] | modules that register jobs |
| max_jobs / max_time | W | int / seconds | 0 / 0 (never) | recycle a child |
| timeout | W | seconds > 0 | 60 | hard limit for one job |
| tries | W | int >= 1 | 1 | attempts before failing a job |
| backoff | W | int or list of ints | [0] | retry delays, last repeats |
| memory / memory_hard | W | MB | 128 / none | soft (between jobs) / hard limit |
| sleep / rest | W | seconds | 3 / 0 | idle wait / pause between jobs |
| prefetch | W | int 1..1000 | 1 | jobs reserved at once |
| retry_after | W | seconds > timeout + 5 | from timeout | reservation time |
| command | C | str (shlex) | required | program to run |
| stopsignal | C (W: TERM) | TERM INT QUIT HUP KILL USR1 USR2 | TERM | polite stop signal |
| autorestart | C | true, false, unexpected | true | restart policy |
| exitcodes | C | list of 0..255 | [0] | expected exit codes |
| user | W C | user name or uid | none | children drop to it (master as root only) |
| umask | W C | octal string '022' | none | children's umask |
| priority | W C | int | 999 | start order, lower first; stops in reverse |
| autostart | W C | bool | true | false: stopped until `start` |
| group | W C | str `[A-Za-z0-9_.-]+` | none | addressed together as GROUP:* |

A third kind, `periodic:` (P), runs no processes: see config/periodic.py for its keys.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from supervisor_q.config.messages import short, translate, type_name
from supervisor_q.config.periodic import PROCESS_KEYS, PeriodicProgram
from supervisor_q.config.schema import (
    SCALE_FIELDS,
    AutoscaleConfig,
    CommandProgram,
    ProgramConfig,
    ScheduleRule,
    WorkerProgram,
)
from supervisor_q.config.yamlsafe import Budget, Refused, safe_load

# Keys of the shared model that only a worker uses (the rest are refused by the models).
WORKER_ONLY = ("log_jobs",)

__all__ = [
    "AutoscaleConfig",
    "CommandProgram",
    "ConfigError",
    "ProgramConfig",
    "ReloadPlan",
    "ScheduleRule",
    "WorkerProgram",
    "config_fingerprint",
    "diff_programs",
    "load_config_dir",
    "load_program_file",
    "scan_config_dir",
]

PROGRAM_SUFFIXES = (".yaml", ".yml")
# The master-level settings file (settings.py reads it): a reserved name, never a program.
SETTINGS_FILE = "supervisor-q.yaml"
# A hostile or broken file must not turn into megabytes of log: one problem is at most
# this many characters, and one file reports at most MAX_FILE_PROBLEMS of them.
MAX_PROBLEM = 300
MAX_FILE_PROBLEMS = 20
# A program file is a few hundred bytes and a few dozen values; these bounds keep a
# reload (which runs in the master's loop) well under a second whatever lands in the dir.
MAX_FILE_BYTES = 256 * 1024
MAX_FILES = 500
MAX_DIR_NODES = 25_000  # YAML values in all the files together
MAX_DIR_BYTES = 2 * 1024 * 1024  # read in all; fingerprints then use size and mtime
MAX_PROBLEMS = 100  # a reload stops reading files after this many problem lines


class ConfigError(Exception):
    """One or more problems in program files; `str()` lists them one per line."""

    def __init__(self, problems: list[str]) -> None:
        problems = [_bounded(problem) for problem in problems]
        super().__init__("\n".join(problems))
        self.problems = problems


def _bounded(problem: str) -> str:
    problem = " ".join(problem.splitlines())  # one problem, one line
    return problem if len(problem) <= MAX_PROBLEM else problem[:MAX_PROBLEM - 1] + "…"


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload does per program name (each tuple sorted)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    rescaled: tuple[str, ...] = ()  # only the size changed: resize the pool, keep children
    replaced: tuple[str, ...] = ()  # anything else changed: replace children gracefully
    unchanged: tuple[str, ...] = ()


def load_program_file(path: str | Path) -> ProgramConfig:
    """Load and validate one program file; raise ConfigError listing every problem."""
    program, problems = _load(Path(path))
    if problems or program is None:
        raise ConfigError(problems)
    return program


def load_config_dir(directory: str | Path) -> dict[str, ProgramConfig]:
    """Load every *.yaml / *.yml file in `directory` (sorted), all or nothing."""
    programs, _, problems = scan_config_dir(directory)
    if problems:
        raise ConfigError(problems)
    return programs


def scan_config_dir(
    directory: str | Path,
) -> tuple[dict[str, ProgramConfig], dict[str, Path], list[str]]:
    """Every valid program with the file it came from, and every problem (bounded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}, {}, ConfigError([f"{directory}: not a directory"]).problems
    paths = _program_paths(directory)
    if len(paths) > MAX_FILES:
        return {}, {}, [f"{directory}: {len(paths)} program files, more than {MAX_FILES}; "
                        f"nothing was read"]
    problems: list[str] = []
    programs: dict[str, ProgramConfig] = {}
    origin: dict[str, Path] = {}
    budget = Budget(MAX_DIR_NODES, MAX_DIR_BYTES)
    for path in paths:
        if budget.nodes < 0 or budget.bytes < 0 or len(problems) >= MAX_PROBLEMS:
            problems.append(f"{directory}: stopped reading before {path.name}: "
                            f"{_stop_reason(budget, problems)}")
            break
        program, file_problems = _load(path, budget)
        problems.extend(_capped(path, file_problems))
        if program is None:
            continue
        if program.name in programs:
            problems.append(
                f"{path}: name: duplicate program name {program.name!r} "
                f"(also defined by {origin[program.name]})"
            )
            continue
        programs[program.name] = program
        origin[program.name] = path
    return programs, origin, ConfigError(problems).problems


def _stop_reason(budget: Budget, problems: list[str]) -> str:
    if len(problems) >= MAX_PROBLEMS:
        return f"{len(problems)} problems already"
    return (f"the program files hold more than {MAX_DIR_NODES} YAML values or "
            f"{MAX_DIR_BYTES // 2**20} MiB in all")


def _capped(path: Path, problems: list[str]) -> list[str]:
    if len(problems) <= MAX_FILE_PROBLEMS:
        return problems
    more = len(problems) - MAX_FILE_PROBLEMS
    return [*problems[:MAX_FILE_PROBLEMS], f"{path}: ... and {more} more problems"]


def config_fingerprint(directory: str | Path) -> tuple[tuple[str, str], ...]:
    """(name, content hash) of every program file: equal fingerprints mean nothing to reload.

    Only regular files are read (never a FIFO, which would block); anything else that
    carries a program suffix is fingerprinted by its kind, so fixing it is a change."""
    entries, read = [], 0
    for path in _program_paths(Path(directory))[:MAX_FILES + 1]:
        try:
            kind = _file_kind(path)
            if kind is None and read > MAX_DIR_BYTES:
                st = path.stat()  # too much to read: a change still shows in these
                kind = f"{st.st_size} bytes, mtime {st.st_mtime_ns}, inode {st.st_ino}"
            if kind is None:
                data, size = _read_capped(path)
                read += len(data)
                kind = f"{size} bytes, sha256 {hashlib.sha256(data).hexdigest()}"
        except OSError as error:
            kind = f"unreadable: {error.strerror}"
        entries.append((path.name, kind))
    return tuple(entries)


def _read_capped(path: Path) -> tuple[bytes, int]:
    """(at most MAX_FILE_BYTES + 1 bytes of the file, its size)."""
    with path.open("rb") as file:
        return file.read(MAX_FILE_BYTES + 1), os.fstat(file.fileno()).st_size


def is_program_file(name: str) -> bool:
    """*.yaml or *.yml, not hidden: editors' lock files (.#x.yaml) and backups (x.yaml~,
    .x.yaml.swp) never count, nor the master's own settings file (SETTINGS_FILE)."""
    return (not name.startswith(".") and Path(name).suffix in PROGRAM_SUFFIXES
            and name != SETTINGS_FILE)


def _program_paths(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if is_program_file(p.name))
    except OSError:
        return []


def _file_kind(path: Path) -> str | None:
    """None for a regular file (or a symlink to one); else why it cannot be a program file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"dangling symlink to {short.repr(str(path.readlink()))}"
        raise
    if stat.S_ISDIR(mode):
        return "is a directory, not a program file (rename it or move it out)"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a program file must be a file)"
    return None


def diff_programs(old: Mapping[str, ProgramConfig], new: Mapping[str, ProgramConfig]) -> ReloadPlan:
    """Compare two loaded configs by program name; pure."""
    rescaled, replaced, unchanged = [], [], []
    for name in sorted(old.keys() & new.keys()):
        before, after = old[name], new[name]
        if before == after:
            unchanged.append(name)
        elif type(before) is type(after) and _without_scale(before) == _without_scale(after):
            rescaled.append(name)
        else:
            replaced.append(name)
    return ReloadPlan(
        added=tuple(sorted(new.keys() - old.keys())),
        removed=tuple(sorted(old.keys() - new.keys())),
        rescaled=tuple(rescaled),
        replaced=tuple(replaced),
        unchanged=tuple(unchanged),
    )


def _without_scale(program: ProgramConfig) -> dict[str, Any]:
    return program.model_dump(exclude=set(SCALE_FIELDS))


def _other_kinds_key(key: str, model: type) -> str:
    """"unknown key", or what is wrong when the key belongs to the other kind of program."""
    if model is WorkerProgram and key == "restart_on_deploy":
        return "only command programs can restart on deploy (workers always do)"
    if model is WorkerProgram and key in CommandProgram.model_fields:
        return "applies to command programs (command:) only"
    if model is CommandProgram and key in WorkerProgram.model_fields:
        return "applies to worker programs (queues:) only"
    return "unknown key"


def _load(path: Path, budget: Budget | None = None) -> tuple[ProgramConfig | None, list[str]]:
    """Parse and validate one file: (program or None, problems)."""
    raw, problems = _read_mapping(path, budget)
    if raw is None:
        return None, problems
    data = dict(raw)
    name_from_file = "name" not in data
    if name_from_file:
        data["name"] = path.stem
    both = "queues" in data and "command" in data
    if both:
        problems.append(
            f"{path}: command: cannot be combined with queues: (a program is either a "
            f"worker with queues: or a plain command:, not both)"
        )
        del data["command"]  # still validate the rest as a worker to report everything
    model = CommandProgram if "command" in data else WorkerProgram
    if model is CommandProgram and not both:  # worker keys a command program would ignore
        problems += [f"{path}: {key}: applies to worker programs (queues:) only"
                     for key in WORKER_ONLY if data.pop(key, None) is not None]
    if "periodic" in data:
        problems += [f"{path}: {key}: does not apply to a periodic program (it runs no "
                     f"processes)" for key in ("queues", "command", *PROCESS_KEYS)
                     if data.pop(key, None) is not None]
        model = PeriodicProgram
    try:
        program = model.model_validate(data)
    except ValidationError as error:
        for key, problem in translate(error, model):
            if both and problem == "unknown key" and key in CommandProgram.model_fields:
                continue  # a command-only key is not the problem; the mix of kinds is
            if key == "name" and name_from_file:
                problem += " (taken from the file name; rename the file or set name:)"
            if problem == "unknown key" and not both:
                problem = _other_kinds_key(key, model)
            problems.append(f"{path}: {key}: {problem}")
        return None, problems
    return (None if problems else program), problems


def _read_mapping(path: Path, budget: Budget | None) -> tuple[dict[Any, Any] | None, list[str]]:
    try:
        kind = _file_kind(path)
        if kind is not None:
            return None, [f"{path}: {kind}"]
        data, size = _read_capped(path)
        if budget is not None:
            budget.bytes -= len(data)
        if len(data) > MAX_FILE_BYTES:
            return None, [f"{path}: file is {size} bytes, more than the "
                          f"{MAX_FILE_BYTES // 1024} KiB a program file may hold"]
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return None, [f"{path}: cannot read: {error}"]
    try:
        raw = safe_load(text, budget)
    except Refused as error:
        return None, [f"{path}: {error.key}: {error.problem}"]
    except yaml.YAMLError as error:
        return None, [f"{path}: {_yaml_problem(error)}"]
    if raw is None:
        return None, [f"{path}: file is empty; expected a mapping with queues: or command:"]
    if not isinstance(raw, dict):
        return None, [
            f"{path}: top level must be a mapping of keys (such as queues: or command:), "
            f"got {type_name(raw)}"
        ]
    return raw, []


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is None:
        return f"invalid YAML: {problem}"
    # PyYAML marks are 0-based; editors count from 1.
    return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"
