"""Read Supervisor's configuration files for `import-supervisord`.

Supervisor's INI dialect: configparser without interpolation (Supervisor expands
`%(name)s` itself, per option), `;` and `#` comments also after a value, `[include]
files = globs...` relative to the including file. Expansion follows Supervisor:
`%(here)s` (the file's directory), `%(ENV_X)s` (the importer's environment),
`%(program_name)s`, `%(group_name)s`, `%(numprocs)s`, and `%(process_num)s`, which
stays per process, as written (supervisor-q puts it in per child, from `numprocs_start`).
`%%` is a literal `%`.
"""

from __future__ import annotations

import configparser
import glob
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILES = 200  # files read through [include] before giving up (a loop, or a mistake)
EXPANSION = re.compile(r"%%|%\((?P<key>[A-Za-z_]\w*)\)(?P<fmt>[-#0 +]*\d*(?:\.\d+)?[sdir])")


class SupervisordError(ValueError):
    """A file that cannot be read as Supervisor's configuration: one line."""


@dataclass
class Section:
    """One [kind:name] section as written, with where it came from."""

    kind: str  # "program", "group", "eventlistener", "supervisord", ...
    name: str  # the part after the colon ("" for [supervisord])
    options: dict[str, str]
    path: Path  # the file it is in

    @property
    def label(self) -> str:
        return f"{self.path} [{self.kind}{':' if self.name else ''}{self.name}]"


@dataclass
class Expander:
    """Supervisor's `%(name)s` expansion for one section; what it could not expand
    is kept as written and reported in `problems`."""

    names: dict[str, str]
    problems: list[str] = field(default_factory=list)

    def __call__(self, key: str, value: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "%%":
                return "%"
            name, fmt = match.group("key"), match.group("fmt")
            if name == "process_num":  # per process: supervisor-q puts it in per child
                if re.fullmatch(r"[-#0 +]*\d*[sd]", fmt):
                    return match.group(0)  # as written: supervisor-q reads this form too
                self.problems.append(f"{key}: %(process_num){fmt} becomes {{process_num}}"
                                     f" (supervisor-q takes only the s and d forms)")
                return "{process_num}"
            if name not in self.names:
                self.problems.append(f"{key}: %({name}){fmt} has no value here, kept as is")
                return match.group(0)
            raw = self.names[name]
            try:
                return ("%" + fmt) % (int(raw) if fmt[-1] in "di" else raw)
            except (TypeError, ValueError):
                return raw
        return EXPANSION.sub(replace, value)


def expander(section: Section, group: str | None = None) -> Expander:
    """The names Supervisor offers a [program:x] section's values."""
    names = {f"ENV_{k}": v for k, v in os.environ.items()}
    names.update(here=str(section.path.resolve().parent), program_name=section.name,
                 group_name=group or section.name,
                 numprocs=section.options.get("numprocs", "1").strip())
    return Expander(names)


def _parse(path: Path) -> configparser.RawConfigParser:
    # strict: a section or option written twice is refused, as Supervisor refuses it
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=True,
                                          interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise SupervisordError(f"{path}: cannot read: {exc.strerror}") from None
    except (configparser.DuplicateSectionError, configparser.DuplicateOptionError) as exc:
        what = (f"[{exc.section}] is" if isinstance(exc, configparser.DuplicateSectionError)
                else f"{exc.option} in [{exc.section}] is")
        raise SupervisordError(f"{path}: {what[:100]} written twice (line {exc.lineno}); "
                               f"Supervisor refuses this file too") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise SupervisordError(f"{path}: not an INI file: {first}") from None
    return parser


def _includes(parser: configparser.RawConfigParser, path: Path,
              missing: list[str]) -> list[Path]:
    """[include] files = ..., globs relative to the including file, sorted per glob."""
    if not parser.has_option("include", "files"):
        return []
    here = Expander({"here": str(path.resolve().parent)})
    found: list[Path] = []
    for pattern in shlex.split(here("files", parser.get("include", "files"))):
        pattern = os.path.join(path.parent, os.path.expanduser(pattern))
        matched = [Path(p) for p in sorted(glob.glob(pattern)) if os.path.isfile(p)]
        if not matched:
            missing.append(f"{path} [include]: no file matches {pattern[:200]}")
        found += matched
    return found


def read_supervisord(paths: list[Path], warnings: list[str] | None = None) -> list[Section]:
    """Every section of these files and of the files they include, in reading order;
    an include that matches no file is added to warnings."""
    queue, seen, sections = list(paths), set(), []
    missing = warnings if warnings is not None else []
    while queue:
        path = queue.pop(0)
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        if len(seen) > MAX_FILES:
            raise SupervisordError(f"{path}: more than {MAX_FILES} files through [include]")
        parser = _parse(path)
        for title in parser.sections():
            if title == "include":
                continue
            kind, _, name = title.partition(":")
            sections.append(Section(kind.strip(), name.strip(), dict(parser.items(title)), path))
        queue += _includes(parser, path, missing)
    return sections


def parse_environment(value: str) -> dict[str, str]:
    """Supervisor's `KEY="value",KEY2=value2` (its dict_of_key_value_pairs)."""
    lexer = shlex.shlex(value, posix=False)
    lexer.wordchars += "/.+-():@{}$*~%[]"
    lexer.whitespace = " \t\r\n"
    tokens = list(lexer)
    result: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        triple = tokens[i:i + 3]
        if len(triple) != 3 or triple[1] != "=":
            raise ValueError(f"unexpected {' '.join(triple)!r}")
        result[triple[0]] = triple[2].strip("'\"")
        if i + 3 < len(tokens) and tokens[i + 3] != ",":
            raise ValueError(f"expected a comma after {triple[0]}")
        i += 4
    return result


def byte_size(value: str) -> int:
    """Supervisor's sizes: 1024, 50KB, 50MB, 1GB (multiples of 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]B)?\s*", value, re.I)
    if not match:
        raise ValueError(f"not a size: {value!r}")
    scale = {"": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}
    return int(match.group(1)) * scale[(match.group(2) or "").upper()]
