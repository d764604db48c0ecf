"""`supervisor-q import-supervisord FILE... --out DIR`: Supervisor's programs as program files.

Warnings (an option with no equivalent, a value that does not convert) go to stderr,
one line each naming the file, the section and the key; they do not fail the import.
A file that cannot be read, or an existing program file in DIR (without --force), does:
exit 1, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from supervisor_q.config.supervisord import Section, SupervisordError, read_supervisord
from supervisor_q.config.supervisord_convert import Converted, convert_program

NOT_CONVERTED = ("eventlistener", "fcgi-program")  # program-like sections left out, with a warning


def add_import_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-supervisord",
                       help="convert Supervisor's [program:x] sections into program files")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="supervisord.conf or conf.d/*.conf files ([include] globs are followed)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="directory to write NAME.yaml program files to (created if missing)")
    p.add_argument("--force", action="store_true",
                   help="overwrite program files that already exist in DIR")
    p.set_defaults(handler=cmd_import_supervisord)


def _groups(sections: list[Section]) -> tuple[dict[str, str], list[str]]:
    """Program name -> its [group:x]; a program in two groups keeps the first."""
    groups: dict[str, str] = {}
    warnings: list[str] = []
    for section in sections:
        if section.kind != "group":
            continue
        for member in section.options.get("programs", "").split(","):
            member = member.strip()
            if member and member in groups and groups[member] != section.name:
                warnings.append(f"{section.label}: {member} is already in group "
                                f"{groups[member]}, kept there")
            elif member:
                groups[member] = section.name
        if "priority" in section.options:
            warnings.append(f"{section.label}: priority: a group has none in supervisor-q "
                            "(set it per program)")
    return groups, warnings


def convert_all(sections: list[Section]) -> tuple[list[Converted], list[str]]:
    """Every [program:x] converted, plus warnings about the other sections."""
    groups, warnings = _groups(sections)
    converted: list[Converted] = []
    for section in sections:
        if section.kind == "program":
            converted.append(convert_program(section, groups.get(section.name)))
        elif section.kind in NOT_CONVERTED:
            warnings.append(f"{section.label}: not converted (supervisor-q has no "
                            f"{section.kind})")
    return converted, warnings


def _duplicates(converted: list[Converted]) -> str | None:
    """Supervisor refuses a program defined twice (in one file or across includes)."""
    seen: dict[str, str] = {}
    for program in converted:
        if program.name in seen:
            return (f"program {program.name} is defined twice: {seen[program.name]} and "
                    f"{program.source}; Supervisor refuses this too")[:300]
        seen[program.name] = program.source
    return None


def _suggestion(program: Converted) -> str:
    kind, worker = program.worker or ("", {})
    body = yaml.safe_dump(worker, default_flow_style=None, sort_keys=False).rstrip()
    indented = "\n".join(f"    {line}" for line in body.splitlines())
    return (f"{program.name}: kept as a command program (it runs {kind}); as a supervisor-q "
            f"worker program it would be:\n{indented}")


def cmd_import_supervisord(args: argparse.Namespace) -> int:
    missing: list[str] = []
    try:
        sections = read_supervisord([Path(f) for f in args.files], missing)
    except SupervisordError as exc:
        print(f"import-supervisord: {exc}", file=sys.stderr)
        return 1
    converted, warnings = convert_all(sections)
    warnings = missing + warnings
    twice = _duplicates(converted)
    if twice:
        print(f"import-supervisord: {twice}; nothing written", file=sys.stderr)
        return 1
    out = Path(args.out)
    targets = {program.name: out / f"{program.name}.yaml" for program in converted}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not args.force:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more"
                                           if len(existing) > 5 else "")
        print(f"import-supervisord: {shown} already exist(s); "
              "nothing written (--force overwrites)", file=sys.stderr)
        return 1
    try:
        out.mkdir(parents=True, exist_ok=True)
        for program in converted:
            targets[program.name].write_text(program.text(), encoding="utf-8")
    except OSError as exc:
        print(f"import-supervisord: cannot write {exc.filename}: {exc.strerror}",
              file=sys.stderr)
        return 1
    for program in converted:
        warnings += [f"{program.source}: {warning}" for warning in program.warnings]
        if program.worker:
            print(_suggestion(program))
    for warning in warnings:
        print(f"warning: {warning}"[:300], file=sys.stderr)  # one bounded line each
    print(f"wrote {len(targets)} program file(s) to {out} ({len(warnings)} warning(s)); "
          f"check them with: supervisor-q check-config {out}")
    return 0
