"""This process's pid, without a getpid() system call per use.

The hot path asks for it several times per job (the kept connection's fork check, the
alarm handler's, the done record's, the reservation token's). Read once per process:
os.register_at_fork resets it in every child forked through os.fork (the master's
spawn, the guard, multiprocessing); a process made by exec starts with a fresh import.
Imports nothing from the package.
"""

from __future__ import annotations

import os

_pid = os.getpid()


def pid() -> int:
    """os.getpid(), cached per process."""
    return _pid


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)
