"""Fill the zygote's allocator holes before it forks (`preload: true`, master/zygotechild.py).

CPython's small-object allocator (obmalloc) serves a new object from a partly used pool
of its size class first. After the imports, the zygote's pools are full of holes (the
temporaries the imports freed), spread over thousands of pages; a child's first
allocations land in those holes, and each write copies a page it shared with the
zygote (and the pool header's page too). Filling every hole in the zygote with a small
object it keeps and never touches again makes a child's own objects start in fresh
pools: pages that are its own anyway, packed, instead of copies scattered over the
zygote's heap. The filling costs the zygote no new pages (the holes are in pages it
holds already).

The holes per size class come from `sys._debugmallocstats()` (the "avail blocks"
column), which CPython writes to the C stderr: it is read through a temporary file.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

_KEPT: list[list[object]] = []  # the fillers: never freed, never touched
_ROW = re.compile(rb"^\s*(\d+)\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$")


def available_blocks() -> dict[int, int]:
    """{block size: free blocks in the allocator's partly used pools}; {} if unknown."""
    stats = getattr(sys, "_debugmallocstats", None)
    if stats is None:
        return {}
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(out.fileno(), 2)
            stats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    blocks = {}
    for line in text.splitlines():
        match = _ROW.match(line)
        if match:
            blocks[int(match.group(2))] = int(match.group(3))
    return blocks


def _filler(size: int, n: int) -> object:
    """A new object whose allocation is exactly `size` bytes (a 16-byte size class)."""
    if size <= 16:
        return object()
    if size <= 32:
        return (1 << 20) + n  # a one-digit int: 28 bytes, a fresh object each time
    return bytes(size - 33)  # 33 bytes of header and NUL, then the zero bytes


def fill_holes(rounds: int = 2) -> int:
    """Fill the partly used pools of every size class; the number of objects kept."""
    kept = 0
    for _ in range(rounds):
        blocks = available_blocks()
        if not any(blocks.values()):
            break
        for size, count in sorted(blocks.items()):
            if count:
                _KEPT.append([_filler(size, n) for n in range(count)])
                kept += count
    return kept
