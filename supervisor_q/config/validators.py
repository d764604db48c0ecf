"""The program keys' value checks that pydantic alone cannot express: module:function
hooks, IANA timezones, `a, b` lists, signal names, Supervisor's octal umask, and users
known to this host. Each returns the value (perhaps normalised) or raises ValueError with
the problem in one line; config/schema.py attaches them to the keys.

Imports nothing from the supervisor_q package.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo


def croniter() -> ModuleType:
    """The croniter module, imported at its first use: its import calls
    platform.architecture(), which forks a `file -b <python>` child. Commands that read
    no cron expression (`work`, `dispatch`, `status`...) then start no such process, one
    that anyone watching the worker's process tree would take for a worker."""
    import croniter

    return croniter


def setup_hook(value: str) -> str:
    module, _, function = value.partition(":")
    if not (function.isidentifier() and all(p.isidentifier() for p in module.split("."))):
        raise ValueError(f"must be module:function, e.g. django:setup, got {value!r}")
    return value


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(
            f"unknown timezone {value!r} (use an IANA name such as Europe/Berlin or UTC)"
        ) from None
    return value


def split_list(value: Any) -> Any:
    """Accept `a, b` as well as `[a, b]` for lists of names."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def normalise_signal(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().upper()
        return value[3:] if value.startswith("SIG") else value
    return value


def umask_value(value: Any) -> Any:
    """Octal digits, as Supervisor reads them: `umask: 022`, `22` or `"0o22"` (the YAML
    reader keeps an unquoted umask as written, yamlsafe.AS_WRITTEN)."""
    if isinstance(value, str):
        digits = value.strip().removeprefix("0o")
        if not digits or any(c not in "01234567" for c in digits):
            raise ValueError(f"must be octal digits such as '022', got {value!r}")
        return int(digits, 8)
    return value


def user_exists(value: str) -> str:
    """A user name or numeric uid known to this host (Supervisor refuses unknown ones)."""
    import pwd

    try:
        if value.isdigit():
            pwd.getpwuid(int(value))
        else:
            pwd.getpwnam(value)
    except (KeyError, OverflowError):
        raise ValueError(f"no user {value!r} on this host") from None
    return value


def uid_text(value: Any) -> Any:
    """`user: 65534` (an unquoted uid) as the text "65534"."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return value
