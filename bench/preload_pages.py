"""Which pages a preloaded child copies from its zygote, and what lives on them.

    .venv/bin/python bench/preload_pages.py [--jobs 25] [--setup django:setup] [--job diag.noop]

A diagnostic for bench/preload_memory.py (Linux, root: /proc/PID/pagemap's frame
numbers): one master runs a `preload: true` program on the same Django app with 2
children; each runs --jobs jobs, then a `diag.pages` job in a child compares its
pagemap with the zygote's. A page is *copied* when both map it present at the same
address but on different frames, *new* when only the child has it. It prints the
copied and new pages per mapping ([heap], anonymous: CPython's obmalloc arenas, the
libraries' writable data) and, for the copied pages, the Python objects on them by
type and by the module of the code they belong to.
"""

from __future__ import annotations

import argparse
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


@job(name="diag.pages")
def pages(zygote):
    sys.setprofile(None)
    ran = list(CODES.values())
    me = os.getpid()
    present, copied, new = 1 << 63, set(), set()
    per_map = collections.Counter()
    for lo, hi, perms, name in maps(me):
        if "w" not in perms or name.startswith("[v"):
            continue
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
    result = {"per_map": sorted(([k[0], k[1], v] for k, v in per_map.items()),
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=25)
    parser.add_argument("--setup", default="django:setup")
    parser.add_argument("--job", default="shop.touch", help="or diag.noop")
    parser.add_argument("--profile", action="store_true",
                        help="list the code a child ran since its fork, per file")
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
    print("the last modules imported:", " ".join(result["last"]))
    if args.profile:
        print(f"{result['ran_total']} functions ran in the child; per file:")
        for name, count in result["ran"]:
            print(f"  {count:5}  {name}")
        print("functions:", " ".join(result["ran_names"]))


if __name__ == "__main__":
    main()
