"""Noticing config-dir changes from the master loop itself, with no watcher thread, so
the master always forks single-threaded (ARCHITECTURE.md's reliability rule 7).

The slow tick compares a snapshot of the directory's program files (name, mtime, size,
inode); a difference only schedules a check: the arbiter reloads when the files'
*contents* differ from the last read (config_fingerprint), so reading a file never
reloads and one edit is one reload.
"""

from __future__ import annotations

import os
from pathlib import Path

from supervisor_q.config.loading import is_program_file

Entry = tuple[int, int, int]  # (mtime_ns, size, inode)


class DirSnapshot:
    """The config dir's program files as {name: (mtime_ns, size, inode)}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last = self.take()

    def take(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return found
        for entry in entries:
            if not is_program_file(entry.name):
                continue
            try:
                st = entry.stat()
            except OSError:  # removed or unreadable between listing and stat
                continue
            found[entry.name] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return found

    def changed(self) -> bool:
        """True when the files differ from the previous call's (or the first) snapshot."""
        now = self.take()
        changed = now != self.last
        self.last = now
        return changed
