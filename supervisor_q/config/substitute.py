"""Supervisor's expansions in a program's strings: `command`, `environment` and log paths.

`{process_num}` and `{program_name}`, and Supervisor's `%(process_num)s`,
`%(program_name)s` (with printf flags: `%(process_num)02d`); `%%` is a literal `%`.
`process_num` is the child's slot, the N of `emails#N` (1-based; Supervisor counts
from `numprocs_start`, 0 by default). Anything else is left as written.

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
