"""The child's side of `user:` and `umask:`, run after fork and before exec or import.

`user:` follows Supervisor: only a master running as root can switch; the child takes
the user's gid and supplementary groups (initgroups), then its uid, and nothing else
(HOME, USER and the environment stay the master's, as in Supervisor). Asking for the
user the master already runs as is not a switch and always works.
"""

from __future__ import annotations

import os
import pwd


class CannotSwitch(Exception):
    """`user:` cannot be honoured; the message is one line for the child's stderr."""


def apply_umask(umask: int | None) -> None:
    if umask is not None:
        os.umask(umask)


def drop_privileges(user: str | None) -> None:
    """Become `user` (name or uid); raise CannotSwitch saying why not."""
    if user is None:
        return
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, OverflowError):
        raise CannotSwitch(f"cannot run as user {user!r}: no such user") from None
    if entry.pw_uid == os.geteuid():
        return
    if os.geteuid() != 0:
        raise CannotSwitch(
            f"cannot run as user {user!r}: the master runs as "
            f"{_name(os.geteuid())!r}, not root (only root can switch users)")
    try:
        os.setgid(entry.pw_gid)
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setuid(entry.pw_uid)
    except OSError as exc:
        raise CannotSwitch(f"cannot run as user {user!r}: {exc.strerror}") from None


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
