"""Program files (conf.d/*.yaml) -> frozen, validated program configs, and reload plans.

Loading validates every file completely and collects every problem before raising one
`ConfigError`, so a bad edit is reported in full and nothing running is touched
(ARCHITECTURE.md's reliability rule 9). Each problem reads "<path>: <key>: <problem>"
(messages.py words them). The schema, its defaults and the cross-field rules live in
`schema.py`.

This module imports nothing from the supervisor_q package except config/schema.py and
config/messages.py.

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
| prefetch | W | int >= 1 | 1 | jobs reserved at once |
| retry_after | W | seconds > timeout + 5 | from timeout | reservation time |
| command | C | str (shlex) | required | program to run |
| stopsignal | C (W: TERM) | TERM INT QUIT HUP KILL USR1 USR2 | TERM | polite stop signal |
| autorestart | C | true, false, unexpected | true | restart policy |
| exitcodes | C | list of 0..255 | [0] | expected exit codes |
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from supervisor_q.config.messages import short, translate, type_name
from supervisor_q.config.schema import (
    SCALE_FIELDS,
    AutoscaleConfig,
    CommandProgram,
    ProgramConfig,
    ScheduleRule,
    WorkerProgram,
)

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
# A hostile or broken file must not turn into megabytes of log: one problem is at most
# this many characters, and one file reports at most MAX_FILE_PROBLEMS of them.
MAX_PROBLEM = 300
MAX_FILE_PROBLEMS = 20


class ConfigError(Exception):
    """One or more problems in program files; `str()` lists them one per line."""

    def __init__(self, problems: list[str]) -> None:
        problems = [_bounded(problem) for problem in problems]
        super().__init__("\n".join(problems))
        self.problems = problems


def _bounded(problem: str) -> str:
    problem = " ".join(problem.splitlines())  # one problem, one line
    return problem if len(problem) <= MAX_PROBLEM else problem[:MAX_PROBLEM - 1] + "…"


class _Refused(yaml.YAMLError):
    """YAML that parses but is not accepted in a program file (an alias, a duplicate key)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key, self.problem = key, problem


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses aliases and duplicate keys, naming the key.

    Aliases are refused outright: nine nested aliases in 352 bytes expand to a billion
    values ("billion laughs") that validation and error messages would walk. Duplicate
    keys are refused because YAML silently keeps the last one, hiding an edit."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._keys: list[str] = []  # the dotted path to the node being composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        key = index.value if isinstance(index, yaml.ScalarNode) else index
        here = self._keys + ([str(key)] if key is not None else [])
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(".".join(here) or "(program)",
                           f"YAML aliases (*{short.repr(event.anchor)[1:-1]}) are not allowed "
                           f"in program files ({_where(event.start_mark)}); write the value "
                           f"out")
        self._keys = here
        try:
            node = super().compose_node(parent, index)
        finally:
            self._keys = here[:-1] if key is not None else here
        if isinstance(node, yaml.MappingNode):
            _refuse_duplicate_keys(node, here)
        return node


def _refuse_duplicate_keys(node: yaml.MappingNode, where: list[str]) -> None:
    first: dict[tuple[str, str], yaml.Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue  # a complex key is refused later by the constructor (unhashable)
        seen = first.setdefault((key_node.tag, key_node.value), key_node)
        if seen is not key_node:
            raise _Refused(".".join([*where, key_node.value]),
                           f"duplicate key at {_where(key_node.start_mark)} (first at "
                           f"{_where(seen.start_mark)}); YAML would silently keep only "
                           f"the last one")


def _where(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"  # PyYAML counts from 0

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
    problems: list[str] = []
    programs: dict[str, ProgramConfig] = {}
    origin: dict[str, Path] = {}
    for path in _program_paths(directory):
        program, file_problems = _load(path)
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


def _capped(path: Path, problems: list[str]) -> list[str]:
    if len(problems) <= MAX_FILE_PROBLEMS:
        return problems
    more = len(problems) - MAX_FILE_PROBLEMS
    return [*problems[:MAX_FILE_PROBLEMS], f"{path}: ... and {more} more problems"]


def config_fingerprint(directory: str | Path) -> tuple[tuple[str, str], ...]:
    """(name, content hash) of every program file: equal fingerprints mean nothing to reload.

    Only regular files are read (never a FIFO, which would block); anything else that
    carries a program suffix is fingerprinted by its kind, so fixing it is a change."""
    entries = []
    for path in _program_paths(Path(directory)):
        try:
            kind = _file_kind(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if kind is None else kind
        except OSError as error:
            digest = f"unreadable: {error.strerror}"
        entries.append((path.name, digest))
    return tuple(entries)


def _program_paths(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix in PROGRAM_SUFFIXES)
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


def _load(path: Path) -> tuple[ProgramConfig | None, list[str]]:
    """Parse and validate one file: (program or None, problems)."""
    raw, problems = _read_mapping(path)
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
    try:
        program = model.model_validate(data)
    except ValidationError as error:
        for key, problem in translate(error, model):
            if both and problem == "unknown key" and key in CommandProgram.model_fields:
                continue  # a command-only key is not the problem; the mix of kinds is
            if key == "name" and name_from_file:
                problem += " (taken from the file name; rename the file or set name:)"
            problems.append(f"{path}: {key}: {problem}")
        return None, problems
    return (None if problems else program), problems


def _read_mapping(path: Path) -> tuple[dict[Any, Any] | None, list[str]]:
    try:
        kind = _file_kind(path)
        if kind is not None:
            return None, [f"{path}: {kind}"]
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return None, [f"{path}: cannot read: {error}"]
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as error:
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
