"""What a `preload: true` zygote does for its children's memory (bench/preload_memory.py
measures it): it warms what the first jobs build lazily, builds the children's Redis
client, and fills its allocator's holes, so that a child copies fewer of its pages; a
child drops the master's log ring it inherited."""

from __future__ import annotations

import array
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from supervisor_q.jobs.registry import dispatch
from supervisor_q.master.holes import available_blocks, fill_holes
from supervisor_q.master.warm import tag_types
from tests.helpers import wait_until
from tests.masters import Master

pytest.importorskip("django")

SETTINGS = '''\
SECRET_KEY = "tests-only"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates",
              "APP_DIRS": True, "OPTIONS": {}}]
'''

# What the child holds when its first job starts, before the job does anything.
JOBS = '''\
import json, logging, os, sys, weakref
from supervisor_q import job
from supervisor_q.jobs.dispatching import queue_for


class Cycle:
    pass


_garbage = Cycle()
_garbage.itself = _garbage  # garbage the import leaves, freed only by the collector
GARBAGE = weakref.ref(_garbage)
del _garbage

@job(name="warm.probe")
def probe() -> None:
    from django.template import engines
    from supervisor_q.master import zygotechild
    queue = zygotechild._PREPARED
    facts = {"pid": os.getpid(),
             "tags": "django.templatetags.l10n" in sys.modules,
             "engines": engines._engines != {},
             "formats": "django.conf.locale.en.formats" in sys.modules,
             "prepared": queue is not None,
             "garbage": GARBAGE() is not None,
             "ring": [type(h).__name__ for h in logging.getLogger().handlers
                      if type(h).__name__ == "RingHandler"]}
    queue_for().client.rpush("facts", json.dumps(facts))
'''


def probe(short_tmp: Path, redis_url: str, env: str = "") -> dict:
    code = short_tmp / "code"
    code.mkdir()
    (code / "warmsite.py").write_text(SETTINGS)
    (code / "warm_jobs.py").write_text(JOBS)
    text = (f"queues: [warm]\nsetup: django:setup\nimport: [warm_jobs]\nnumprocs: 1\n"
            f"startsecs: 0\ndirectory: {code}\npreload: true\n"
            f"environment: {{DJANGO_SETTINGS_MODULE: warmsite{env}}}\n")
    client = redis.Redis.from_url(redis_url)
    with Master(short_tmp, redis_url, {"warm": text}) as master:
        [pid] = master.wait_running("warm", 1)
        dispatch("warm.probe", queue="warm")
        facts = json.loads(wait_until(lambda: client.lindex("facts", 0), timeout=20,
                                      message="the probe ran"))
        assert facts["pid"] == pid
        return facts


def test_the_zygote_warms_django_so_a_child_does_not_import_it_again(
        short_tmp: Path, redis_url: str) -> None:
    facts = probe(short_tmp, redis_url)
    assert facts["tags"], "the template tag libraries came from the zygote"
    assert facts["engines"], "the template engines were built in the zygote"
    assert facts["formats"], "the locale's formats came from the zygote"
    assert facts["prepared"], "the zygote built the children's queue"
    assert not facts["garbage"], "the zygote collected the imports' garbage before the fork"
    assert facts["ring"] == [], "a child does not log into the master's ring it inherited"


def test_without_warming_a_child_builds_them_itself(short_tmp: Path, redis_url: str) -> None:
    facts = probe(short_tmp, redis_url, ", SUPERVISOR_Q_PRELOAD_WARM: '0'")
    assert not facts["tags"] and not facts["engines"] and not facts["formats"]
    assert not facts["prepared"]


def _printed(script: str) -> list[int]:
    """What script, run by a fresh interpreter, printed as JSON."""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=30)
    return json.loads(out.stdout)


def test_fill_holes_leaves_no_free_block_in_the_pools_it_found() -> None:
    # A fresh interpreter: 20,000 objects of one size class, every other one freed,
    # leave ~10,000 holes; after fill_holes only the newest pool of the class may have
    # free blocks (a 16 KiB pool holds 113 blocks of 144 bytes).
    script = (
        "import json, sys\n"
        "from supervisor_q.master.holes import available_blocks, fill_holes\n"
        "objs = [bytes(100 + i % 2) for i in range(20000)]\n"  # 133/134 bytes: class 144
        "del objs[::2]\n"
        "before = available_blocks().get(144, 0)\n"
        "kept = fill_holes()\n"
        "print(json.dumps([before, available_blocks().get(144, 0), kept]))\n")
    before, after, kept = _printed(script)
    assert before >= 9000
    assert after < 16384 // 144 and kept >= before


def test_fill_malloc_holes_takes_the_free_chunks_of_the_c_heap() -> None:
    # A fresh interpreter: 4,000 bytes objects of ~3 KB (over 512 bytes: the C
    # library's malloc, not CPython's pools), every other one freed, leave ~2,000 free
    # chunks between live ones in the heap; after fill_malloc_holes a few are left at
    # most (the ones its own temporaries freed).
    script = (
        "import json\n"
        "from supervisor_q.master.holes import fill_malloc_holes, malloc_free_chunks\n"
        "objs = [bytes(3000 + i % 2) for i in range(4000)]\n"
        "del objs[::2]\n"
        "before = sum(malloc_free_chunks().values())\n"
        "taken = fill_malloc_holes()\n"
        "print(json.dumps([before, sum(malloc_free_chunks().values()), taken]))\n")
    before, after, taken = _printed(script)
    assert before >= 1900
    assert after < 50 and taken >= before


def test_available_blocks_reads_the_allocator_statistics() -> None:
    blocks = available_blocks()
    assert sorted(blocks)[:3] == [16, 32, 48] and max(blocks) == 512
    assert fill_holes(rounds=0) == 0


def test_tag_types_gives_every_class_its_attribute_cache_version_tag() -> None:
    valid = 1 << 19  # Py_TPFLAGS_VALID_VERSION_TAG: cleared when a class is changed

    class Raising(type):
        def __getattr__(cls, name: str) -> None:
            raise RuntimeError(name)

    class Odd(metaclass=Raising):
        pass

    class Plain:
        pass

    Odd.changed = Plain.changed = 1  # type: ignore[attr-defined]
    assert not Odd.__flags__ & valid and not Plain.__flags__ & valid
    assert tag_types() >= 2
    assert Odd.__flags__ & valid and Plain.__flags__ & valid


def _frames(pid: int) -> dict[int, int]:
    """{address: physical frame} of a process's present writable pages (root only)."""
    page = os.sysconf("SC_PAGE_SIZE")
    out = {}
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            parts = line.split()
            if "w" not in parts[1] or (len(parts) > 5 and parts[5].startswith("[v")):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            pagemap.seek(lo // page * 8)
            entries = array.array("Q", pagemap.read((hi - lo) // page * 8))
            out.update((lo + i * page, e & ((1 << 55) - 1))
                       for i, e in enumerate(entries) if e >> 63)
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="pagemap frame numbers need root")
def test_the_zygote_writes_few_pages_per_fork(short_tmp: Path, redis_url: str) -> None:
    # Each page the zygote writes while it forks a child stops being shared with the
    # children forked before (each keeps the old frame as its own). Its fork loop reads
    # no JSON and builds no file object: ~40 pages, where it wrote ~120 before.
    code = short_tmp / "code"
    code.mkdir()
    (code / "lean_jobs.py").write_text("import json, logging\n")
    text = (f"queues: [lean]\nimport: [lean_jobs]\nnumprocs: 1\nstartsecs: 0\n"
            f"directory: {code}\npreload: true\n")
    with Master(short_tmp, redis_url, {"lean": text}) as master:
        master.wait_running("lean", 1)
        zygote = wait_until(lambda: master.program("lean")["preload"]["zygote_pid"])
        written = []
        for n in (2, 3, 4):
            before = _frames(zygote)
            master.call("scale", program="lean", numprocs=n)
            master.wait_running("lean", n)
            after = _frames(zygote)
            written.append(sum(1 for addr, frame in before.items()
                               if after.get(addr, frame) != frame))
        assert min(written) <= 70, written
