"""`supervisor-q work --import mod` run from mod's directory, as a user types it: the
console script, no PYTHONPATH; mod is found as `python -m` would find it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from supervisor_q.jobs.registry import dispatch

MODULE = '''
from supervisor_q import job


@job(name="cwd.touch")
def touch(path: str) -> None:
    with open(path, "w") as out:
        out.write("ran")
'''


def test_work_imports_a_module_from_the_current_directory(
        short_tmp: Path, redis_url: str) -> None:
    (short_tmp / "cwdjobs_sq.py").write_text(MODULE)
    done = short_tmp / "done"
    dispatch("cwd.touch", str(done), queue="cwdq")
    script = Path(sys.executable).parent / "supervisor-q"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(script), "--redis-url", redis_url, "work", "--queue",
                             "cwdq", "--import", "cwdjobs_sq", "--stop-when-empty"],
                            cwd=short_tmp, env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr[-2000:]
    assert done.read_text() == "ran"
