"""Resident memory of this process, cheaply enough to check after every job.

Reads /proc/self/statm through a kept file descriptor (one pread, a few
microseconds); falls back to psutil where /proc is missing.
"""

from __future__ import annotations

import os

import psutil

from supervisor_q import procid

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_statm: dict[int, int] = {}  # pid -> fd, so a forked child opens its own


def current_rss() -> int:
    """Bytes of resident memory of the calling process."""
    pid = procid.pid()
    fd = _statm.get(pid)
    try:
        if fd is None:
            fd = _statm[pid] = os.open("/proc/self/statm", os.O_RDONLY)
        return int(os.pread(fd, 128, 0).split()[1]) * _PAGE
    except OSError:
        return psutil.Process().memory_info().rss
