"""Supervisor's expansions in a program's strings: `{process_num}`, `%(process_num)s`
and `%(program_name)s` (the slot number and the program's name). Imports nothing."""

from __future__ import annotations


def substitute(text: str, program: str, process_num: int) -> str:
    """text with the process number and program name put in; other text untouched."""
    return (text.replace("{process_num}", str(process_num))
            .replace("%(process_num)s", str(process_num))
            .replace("%(program_name)s", program))
