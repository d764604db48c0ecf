"""Supervisor's expansions in a program's strings: `command`, `environment` and log paths.

`{process_num}` and `{program_name}`, and Supervisor's `%(process_num)s`,
`%(program_name)s` (with printf flags: `%(process_num)02d`); `%%` is a literal `%`.
`process_num` is the child's slot, the N of `emails#N` (1-based; Supervisor counts
from `numprocs_start`, 0 by default). Any other `%(name)s` is refused when the config
is loaded (check_placeholders); `{other}` braces are left as written (shell syntax).

This module imports nothing from the supervisor_q package.
"""

from __future__ import annotations

import re

_PRINTF = re.compile(r"%\((process_num|program_name)\)([-#0 +]*\d*)([sd])|%%")
_BRACES = re.compile(r"\{(process_num|program_name)\}")


def substitute(text: str, program: str, process_num: int) -> str:
    """`text` with the program's name and the child's number put in (pure)."""
    values: dict[str, int | str] = {"process_num": process_num, "program_name": program}

    def printf(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        key, flags, kind = match.groups()
        value = values[key]
        if kind == "d" and not isinstance(value, int):
            return match.group(0)  # %(program_name)d: not a number, left as written
        return f"%{flags}{kind}" % value

    text = _BRACES.sub(lambda m: str(values[m.group(1)]), text)
    return _PRINTF.sub(printf, text)


_ANY_PRINTF = re.compile(r"%%|%\((\w*)\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]?")


def check_placeholders(text: str) -> str:
    """text, or ValueError naming a `%(name)s` supervisor-q does not fill in (Supervisor
    refuses those too; its %(here)s and %(ENV_X)s are expanded by import-supervisord)."""
    for match in _ANY_PRINTF.finditer(text):
        if match.group(0) == "%%":
            continue
        known = match.group(1) in ("process_num", "program_name")
        if not known or match.group(0)[-1:] not in ("s", "d"):
            raise ValueError(f"{match.group(0)[:40]!r} is not a placeholder supervisor-q "
                             f"fills in (it knows %(process_num)s, %(process_num)02d and "
                             f"%(program_name)s; write %% for a literal %)")
    return text
