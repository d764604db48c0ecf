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

The C library's allocator (glibc malloc: objects over 512 bytes, list and dict storage,
the C extensions' own memory) has holes too: the free chunks left in the zygote's heap
by what the imports freed, hundreds of them spread over its pages. A child's malloc
takes the best-fitting free chunk first, so each of its first allocations wrote into a
page shared with the zygote. fill_malloc_holes takes every free chunk of the heap in
the zygote (their sizes from `malloc_info()`), so a child's allocations come from the
top of the heap, packed into pages of its own. It measured 0.6 MiB less per child after
25 Django jobs (bench/preload_memory.py); elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile

_KEPT: list[list[object]] = []  # the fillers: never freed, never touched
_ROW = re.compile(rb"^\s*(\d+)\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$")
_MALLOC_KEPT: list[list[int]] = []  # the chunks taken: never freed, never touched
# glibc's per-thread cache, served before the bins and not in malloc_info: up to 7 freed
# chunks for each request size up to 1032 bytes (sizes 16 apart). Taking 7 of each
# empties it; what it did not hold comes from the bins or the top.
TCACHE_SIZES = range(24, 1033, 16)
TCACHE_COUNT = 7
_CHUNKS = re.compile(rb'<(?:size|unsorted) from="(\d+)" to="\d+" total="\d+" count="(\d+)"/>')


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


def _malloc_library() -> ctypes.CDLL | None:
    """The C library's malloc and malloc_info (glibc), typed; None elsewhere."""
    lib = ctypes.CDLL(None)
    if not hasattr(lib, "malloc_info"):
        return None
    lib.malloc.restype = ctypes.c_void_p
    lib.malloc.argtypes = [ctypes.c_size_t]
    lib.fdopen.restype = ctypes.c_void_p
    lib.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
    lib.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    lib.fclose.argtypes = [ctypes.c_void_p]
    return lib


def malloc_free_chunks(lib: ctypes.CDLL | None = None) -> dict[int, int]:
    """{chunk size: free chunks} in the main arena of the C library's allocator (its
    bins and its unsorted list, from malloc_info); {} if unknown (not glibc, or no
    temporary file). A bin of large chunks counts under its smallest size."""
    lib = lib or _malloc_library()
    if lib is None:
        return {}
    try:
        with tempfile.TemporaryFile() as out:
            copy = os.dup(out.fileno())
            stream = lib.fdopen(copy, b"w")
            if not stream:
                os.close(copy)
                return {}
            lib.malloc_info(0, stream)
            lib.fclose(stream)  # flushes, and closes the copy
            out.seek(0)
            text = out.read()
    except OSError:  # no temporary file (a user without a writable TMPDIR): unknown
        return {}
    main = text.split(b"</heap>", 1)[0]  # the main thread's arena: <heap nr="0">
    chunks: dict[int, int] = {}
    for size, count in _CHUNKS.findall(main):
        chunk = int(size) & ~15  # chunks are 16-byte multiples; flag bits aside
        chunks[chunk] = chunks.get(chunk, 0) + int(count)
    return chunks


def fill_malloc_holes(rounds: int = 3) -> int:
    """Take every free chunk of the C heap's main arena, its thread cache's first; the
    number taken. A chunk larger than asked for is split and its rest freed again: the
    next round takes it."""
    lib = _malloc_library()
    if lib is None:
        return 0
    taken = _take(lib, [(size, TCACHE_COUNT) for size in TCACHE_SIZES])
    for _ in range(rounds):
        chunks = malloc_free_chunks(lib)
        if not chunks:
            break
        # a request of chunk - 8 bytes takes a chunk of that size
        taken += _take(lib, [(max(chunk - 8, 24), count)
                             for chunk, count in sorted(chunks.items())])
    return taken


def _take(lib: ctypes.CDLL, requests: list[tuple[int, int]]) -> int:
    """malloc(size) count times for each (size, count), kept; the number taken."""
    taken = 0
    for size, count in requests:
        kept = [0] * count  # sized once: a growing list would free chunks of its own
        for i in range(count):
            kept[i] = lib.malloc(size)
        _MALLOC_KEPT.append(kept)
        taken += count
    return taken
