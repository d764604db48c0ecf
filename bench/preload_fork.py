"""What a bare fork costs a preloaded child: the floor under bench/preload_memory.py.

    .venv/bin/python bench/preload_fork.py [--children 3]

This process becomes a zygote for the benchmark's Django app (django.setup(), its job
module, the worker's modules; warmed, holes filled, frozen: what `preload: true` does),
then forks children that stop themselves at once (SIGSTOP) and reads their USS and
Private_Dirty per mapping from here, so that the measurement writes nothing in them:

- os.fork: Python's fork, with the interpreter's after-fork work and the after-fork
  hooks the standard library registers (threading, logging, random) and supervisor-q's;
- libc fork: the C library's fork() through ctypes: none of Python's after-fork work
  (a floor to compare with, not something to run code in);
- libc fork + one hook: the same, then that hook alone: what it costs.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import logging
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from preload_memory import write_app  # noqa: E402


def zygote(app: Path) -> None:
    write_app(app)
    sys.path.insert(0, str(app))
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchsite.settings"
    gc.disable()
    import django

    django.setup()
    import shop_jobs  # noqa: F401

    from supervisor_q.master import spawn, zygotechild  # noqa: F401 - the worker's modules
    from supervisor_q.master.holes import fill_holes, fill_malloc_holes
    from supervisor_q.master.warm import tag_types, warm_zygote

    warm_zygote()
    tag_types()
    fill_holes()
    fill_malloc_holes()
    gc.freeze()


def private(pid: int) -> tuple[float, dict[str, int]]:
    """USS in KiB, and Private_Dirty KiB per kind of mapping."""
    per: collections.Counter[str] = collections.Counter()
    name = ""
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            parts = line.split()
            if not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else "[anon]"
                name = name if name.startswith("[") else os.path.basename(name)
            elif parts[0] == "Private_Dirty:":
                per[name] += int(parts[1])
    return psutil.Process(pid).memory_full_info().uss / 1024, dict(per.most_common(3))


def child_cost(fork: Callable[[], int], hook: Callable[[], object] | None) -> tuple:
    pid = fork()
    if pid == 0:
        if hook is not None:
            hook()
        os.kill(os.getpid(), signal.SIGSTOP)
        os._exit(0)
    os.waitpid(pid, os.WUNTRACED)
    try:
        return private(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sqpf-", dir="/tmp") as tmp:
        zygote(Path(tmp) / "app")
        libc = ctypes.PyDLL(None)  # holds the GIL across the call: nothing runs meanwhile
        hooks: dict[str, Callable[[], object] | None] = {
            "threading._after_fork": threading._after_fork,  # type: ignore[attr-defined]
            "logging's lock re-init": logging._after_at_fork_child_reinit_locks,  # type: ignore[attr-defined]
            "random's reseed": random._inst.seed,  # type: ignore[attr-defined]
        }
        rows = [("os.fork", os.fork, None), ("libc fork", libc.fork, None)]
        rows += [(f"libc fork + {name}", libc.fork, hook) for name, hook in hooks.items()]
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; median of "
              f"{args.children} children\n")
        print("| fork | USS | Private_Dirty KiB by mapping |\n|---|---|---|")
        for label, fork, hook in rows:
            costs = [child_cost(fork, hook) for _ in range(args.children)]
            uss = statistics.median(c[0] for c in costs)
            print(f"| {label} | {uss / 1024:.2f} MiB | {costs[-1][1]} |")


if __name__ == "__main__":
    main()
