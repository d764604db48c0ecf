"""Which pages a preloaded child copies from its zygote, and what lives on them.

    .venv/bin/python bench/preload_pages.py [--jobs 25] [--setup django:setup] [--job diag.noop]
    .venv/bin/python bench/preload_pages.py --forks 3

A diagnostic for bench/preload_memory.py (Linux, root: /proc/PID/pagemap's frame
numbers): one master runs a `preload: true` program on the same Django app with one
child; it runs --jobs jobs, then a `diag.pages` job compares its pagemap with the
zygote's. A page is *copied* when both map it present at the same address but on
different frames, *new* when only the child has it. It prints the copied and new pages
per mapping ([heap], anonymous: CPython's obmalloc arenas, the libraries' writable
data); for the copied pages, the Python objects on them by type and by module; and what
changed on them, word by word against the zygote's bytes (/proc/PID/mem): pages written
back to the same bytes (a reference count raised and dropped again), pages whose only
change is reference counts, changes inside objects (a code object's body: 3.11's
warm-up counter and quickened bytecode) or outside any object found (free blocks, dict
and list storage, pool headers), and the child's own objects found there. (Its own
snapshot, taken in the child, adds some `bytes` objects to the last of these.)

--forks N instead counts the zygote's pages that change frame while it forks N more
children: pages each child forked before keeps as a private copy.
"""

from __future__ import annotations

import argparse
import array
import collections
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from preload_memory import write_app  # noqa: E402

from supervisor_q.jobs.registry import dispatch  # noqa: E402
from supervisor_q.queue.server import RedisServer  # noqa: E402
from tests.helpers import wait_until  # noqa: E402
from tests.masters import Master  # noqa: E402

DIAG = '''\
import array, collections, gc, json, os, sys, types
from supervisor_q import job
from supervisor_q.jobs.dispatching import queue_for

PAGE = os.sysconf("SC_PAGE_SIZE")
POOL = 16384  # obmalloc's pool on 64-bit CPython 3.10+ (its 48-byte header first)
CODES = {}  # --profile: the code objects a child ran, from its fork on


def _called(frame, event, arg):
    if event == "call":
        CODES[id(frame.f_code)] = frame.f_code


def _profile():
    import threading
    sys.setprofile(_called)
    threading.setprofile(_called)


if os.environ.get("DIAG_PROFILE"):
    os.register_at_fork(after_in_child=_profile)


def maps(pid):
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            name = parts[5] if len(parts) > 5 else "[anon]"
            out.append((lo, hi, parts[1], name))
    return out


def frames(pid, lo, hi):
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(lo // PAGE * 8)
        data = f.read((hi - lo) // PAGE * 8)
    return array.array("Q", data)


def owner(obj):
    code = obj if isinstance(obj, types.CodeType) else None
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
    if code is not None:
        return code.co_filename
    mod = getattr(obj, "__module__", None)
    return mod if isinstance(mod, str) else None


def group(name):
    if not name:
        return "?"
    for key in ("django", "supervisor_q", "redis", "shop", "benchsite", "encodings", "json",
                "asyncio", "email", "logging", "decimal", "re", "sqlite3", "importlib"):
        if f"/{key}/" in name or name.startswith(key):
            return key
    return "lib:" + os.path.basename(name)


@job(name="diag.noop")
def noop(n):
    queue_for().client.incr("touched")


def snapshot(zygote, pages):
    """{page: (the child's bytes, the zygote's bytes)} for the copied pages."""
    import ctypes
    out = {}
    with open(f"/proc/{zygote}/mem", "rb", buffering=0) as mem:
        for page in pages:
            mine = ctypes.string_at(page, PAGE)
            mem.seek(page)
            out[page] = (mine, mem.read(PAGE))
    return out


def writes(contents, seen, heap):
    """The words that differ on the copied pages, each given to the object holding it:
    (type, "refcnt" | "gc" (the GC header before it) | "body") -> words, and the
    number of pages on which refcounts are the only change."""
    import bisect
    starts = sorted(seen)
    by, only_ref = collections.Counter(), 0
    pattern, per_page = collections.Counter(), collections.Counter()
    for page, (mine, theirs) in contents.items():
        kinds, keys = set(), set()
        a, b = memoryview(mine).cast("Q"), memoryview(theirs).cast("Q")
        for i in range(PAGE // 8):
            if a[i] == b[i]:
                continue
            addr = page + 8 * i
            j = bisect.bisect_right(starts, addr + 16) - 1
            key = ("?", "pool header" if addr % POOL < 48 else "free/other")
            if j >= 0:
                start = starts[j]
                obj = seen[start]
                if start - 16 <= addr < start:
                    key = (type(obj).__name__, "gc")
                elif start <= addr < start + sys.getsizeof(obj):
                    key = (type(obj).__name__, "refcnt" if addr == start else "body")
                elif j >= 1:
                    start = starts[j - 1]
                    obj = seen[start]
                    if start <= addr < start + sys.getsizeof(obj):
                        key = (type(obj).__name__, "refcnt" if addr == start else "body")
            by[key] += 1
            kinds.add(key[1])
            keys.add(key)
        only_ref += kinds == {"refcnt"}
        for key in keys:
            per_page[key] += 1
        where = "heap" if heap[0] <= page < heap[1] else "anon"
        pattern[where + ":" + ",".join(sorted(kinds))] += 1
    by["patterns"] = pattern.most_common(16)
    by["per_page"] = [[list(k), v] for k, v in per_page.most_common(25)]
    return by, only_ref


def born(contents, seen):
    """The child's own objects on the copied pages: those whose type word differs from
    the zygote's bytes at that address (a new object where the zygote had another, or
    a free block), by type, with their bytes; and pages by the share of words changed."""
    mine_types, size = collections.Counter(), collections.Counter()
    for addr, obj in seen.items():
        page = addr - addr % PAGE
        if page in contents and addr + 16 <= page + PAGE:
            off = addr - page
            mine, theirs = contents[page]
            if mine[off + 8:off + 16] != theirs[off + 8:off + 16]:
                mine_types[type(obj).__name__] += 1
                size[type(obj).__name__] += sys.getsizeof(obj)
    shares = collections.Counter()
    for page, (mine, theirs) in contents.items():
        a, b = memoryview(mine).cast("Q"), memoryview(theirs).cast("Q")
        n = sum(1 for i in range(PAGE // 8) if a[i] != b[i])
        shares["0" if n == 0 else "1-8" if n <= 8 else "9-64" if n <= 64 else ">64"] += 1
    return {"types": [(t, mine_types[t], size[t]) for t, _ in size.most_common(15)],
            "bytes": sum(size.values()), "shares": dict(shares)}


def _ran_pages(ran, seen, copied):
    """Copied pages spanned by the code objects the child ran (header and bytecode,
    which 3.11 quickens in place), by their functions, and by neither."""
    def span(obj):
        lo = id(obj) - id(obj) % PAGE
        return set(range(lo, id(obj) + sys.getsizeof(obj), PAGE))
    codes, funcs = set(), set()
    ids = {id(c) for c in ran}
    for code in ran:
        codes |= span(code)
    for obj in seen.values():
        if isinstance(obj, types.FunctionType) and id(obj.__code__) in ids:
            funcs |= span(obj)
    return {"code": len(copied & codes), "function": len(copied & funcs - codes),
            "neither": len(copied - codes - funcs)}


@job(name="diag.pages")
def pages(zygote):
    sys.setprofile(None)
    ran = list(CODES.values())
    me = os.getpid()
    present, copied, new = 1 << 63, set(), set()
    heap_lo = heap_hi = 0
    per_map = collections.Counter()
    for lo, hi, perms, name in maps(me):
        if "w" not in perms or name.startswith("[v"):
            continue
        if name == "[heap]":
            heap_lo, heap_hi = lo, hi
        mine, theirs = frames(me, lo, hi), frames(zygote, lo, hi)
        kind = name if name.startswith("[") else ("anon" if name == "[anon]"
                                                   else os.path.basename(name))
        for i, (a, b) in enumerate(zip(mine, theirs)):
            if not a & present:
                continue
            addr = lo + i * PAGE
            if not b & present:
                new.add(addr)
                per_map[(kind, "new")] += 1
            elif (a & ((1 << 55) - 1)) != (b & ((1 << 55) - 1)):
                copied.add(addr)
                per_map[(kind, "copied")] += 1
    contents = snapshot(zygote, sorted(copied))
    # Objects on the copied pages (snapshot taken first: walking writes refcounts)
    gc.unfreeze()
    seen, stack = {}, list(gc.get_objects())
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen[id(obj)] = obj
        stack.extend(gc.get_referents(obj))
    by_type, by_mod, pages_of = collections.Counter(), collections.Counter(), set()
    for addr, obj in seen.items():
        page = addr - addr % PAGE
        if page in copied:
            by_type[type(obj).__name__] += 1
            by_mod[group(owner(obj))] += 1
            pages_of.add(page)
    same = {page for page, (mine, theirs) in contents.items() if mine == theirs}
    on_same = collections.Counter(type(obj).__name__ for addr, obj in seen.items()
                                  if addr - addr % PAGE in same)
    where = collections.Counter("heap" if heap_lo <= p < heap_hi else "other" for p in same)
    by_write, only_ref = writes(contents, seen, (heap_lo, heap_hi))
    patterns = by_write.pop("patterns")
    per_page = by_write.pop("per_page")
    result = {"born": born(contents, seen),
              "writes": [[list(k), v] for k, v in by_write.most_common(40)],
              "only_refcounts": only_ref, "patterns": patterns, "per_page": per_page,
              "same": [dict(where), on_same.most_common(12)],
              "ran_code_pages": _ran_pages(ran, seen, copied),
              "per_map": sorted(([k[0], k[1], v] for k, v in per_map.items()),
                                key=lambda r: -r[2]),
              "copied": len(copied), "new": len(new), "with_objects": len(pages_of),
              "by_type": by_type.most_common(25), "by_mod": by_mod.most_common(20),
              "ran": collections.Counter(c.co_filename.split("site-packages/")[-1]
                                         for c in ran).most_common(40),
              "ran_total": len(ran),
              "ran_names": sorted(f"{c.co_filename.split('/')[-1]}:{c.co_qualname}"
                                  for c in ran),
              "modules": len(sys.modules), "last": list(sys.modules)[-45:]}
    queue_for().client.set("diag", json.dumps(result))
'''


PROFILE = ", DIAG_PROFILE: '1'"


def zygote_frames(pid: int) -> dict[int, tuple[int, str]]:
    """{address: (frame, mapping)} of the zygote's present writable pages."""
    page = os.sysconf("SC_PAGE_SIZE")
    out = {}
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            parts = line.split()
            name = parts[5] if len(parts) > 5 else "[anon]"
            if "w" not in parts[1] or name.startswith("[v"):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            pagemap.seek(lo // page * 8)
            entries = array.array("Q", pagemap.read((hi - lo) // page * 8))
            for i, entry in enumerate(entries):
                if entry >> 63:
                    out[lo + i * page] = (entry & ((1 << 55) - 1), os.path.basename(name))
    return out


def zygote_writes(master: Master, zygote: int, forks: int) -> None:
    """The zygote's pages that change frame while it forks one more child: each is a
    page every child forked before keeps as a private copy (COW breaks on both sides)."""
    for n in range(2, 2 + forks):
        before = zygote_frames(zygote)
        master.call("scale", program="pre", numprocs=n)
        master.wait_running("pre", n, timeout=60)
        after = zygote_frames(zygote)
        changed = collections.Counter(name for addr, (frame, name) in before.items()
                                      if addr in after and after[addr][0] != frame)
        print(f"fork {n}: {sum(changed.values())} zygote pages changed frame",
              dict(changed.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=25)
    parser.add_argument("--setup", default="django:setup")
    parser.add_argument("--job", default="shop.touch", help="or diag.noop")
    parser.add_argument("--profile", action="store_true",
                        help="list the code a child ran since its fork, per file")
    parser.add_argument("--forks", type=int, default=0,
                        help="only count the zygote's pages written per fork, N forks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sqpp-", dir="/tmp") as tmp_name:
        tmp = Path(tmp_name)
        app = tmp / "app"
        write_app(app)
        (app / "sq_diag.py").write_text(textwrap.dedent(DIAG))
        server = RedisServer(data_dir=tmp / "redis", persistent=False)
        server.start()
        os.environ["SUPERVISOR_Q_REDIS_URL"] = server.url
        client = redis.Redis.from_url(server.url)
        (tmp / "m").mkdir()
        text = (f"queues: [pre]\nimport: [shop_jobs, sq_diag]\nsetup: {args.setup}\n"
                f"numprocs: 1\ntimeout: 600\nstartsecs: 0\nmemory: 0\ndirectory: {app}\n"
                "preload: true\n"
                "environment: {DJANGO_SETTINGS_MODULE: benchsite.settings"
                f"{PROFILE if args.profile else ''}}}\n")
        master = Master(tmp / "m", server.url, {"pre": text})
        try:
            master.start()
            master.wait_running("pre", 1, timeout=60)
            zygote = wait_until(lambda: master.program("pre")["preload"]["zygote_pid"],
                                timeout=30)
            if args.forks:
                zygote_writes(master, zygote, args.forks)
                return
            for i in range(args.jobs):
                dispatch(args.job, i, queue="pre")
            wait_until(lambda: int(client.get("touched") or 0) >= args.jobs, timeout=60)
            dispatch("diag.pages", zygote, queue="pre")
            result = json.loads(wait_until(lambda: client.get("diag"), timeout=60))
        except AssertionError:
            print(master.tail(60))
            raise
        finally:
            master.stop()
            server.stop()
    kib = os.sysconf("SC_PAGE_SIZE") // 1024
    print(f"copied {result['copied'] * kib} KiB, new {result['new'] * kib} KiB; "
          f"{result['with_objects']} copied pages hold Python objects found; "
          f"{result['modules']} modules")
    for kind, what, n in result["per_map"][:15]:
        print(f"  {what:6} {n * kib:7} KiB  {kind}")
    print("objects on copied pages, by type:", result["by_type"])
    print("by module:", result["by_mod"])
    print(f"pages whose only change is reference counts: {result['only_refcounts']}")
    print("pages by the kinds of change on them:", result["patterns"])
    print("unchanged copied pages (written back to the same bytes), where, "
          "objects on them:", result["same"])
    print("the child's own objects on copied pages:", result["born"])
    print("pages with a change of (type, field):", result["per_page"])
    print("changed words by (type, field):", result["writes"])
    print("the last modules imported:", " ".join(result["last"]))
    if args.profile:
        print("copied pages holding the code objects the child ran, their functions, "
              "neither:", result["ran_code_pages"])
        print(f"{result['ran_total']} functions ran in the child; per file:")
        for name, count in result["ran"]:
            print(f"  {count:5}  {name}")
        print("functions:", " ".join(result["ran_names"]))


if __name__ == "__main__":
    main()
