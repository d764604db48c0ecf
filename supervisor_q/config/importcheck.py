"""`check-config` on this host: does each program's `directory:` exist, and can each
worker program's `import:` modules be imported (after its `setup:` hook, as a child does)?

Checked in a subprocess per program, started as a child would be (the program's
`directory:` as working directory and first on sys.path, its `environment:`), so
neither the checker nor the master ever imports job code. Output of the job modules
themselves is discarded; the verdict travels on a pipe of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from supervisor_q.config.loading import ConfigError, ProgramConfig, WorkerProgram

IMPORT_CHECK_TIMEOUT = 30.0  # seconds for one program's modules to import

# Runs in the subprocess: argv[1] is the verdict fd, argv[2] the setup hook ("" for
# none), the rest are module names. A failed setup is reported alone: the imports after
# it would fail for its sake (Django's AppRegistryNotReady).
_SCRIPT = """\
import importlib, json, os, sys
out = os.fdopen(int(sys.argv[1]), "w")
sys.path.insert(0, os.getcwd())
failed = []
hook = sys.argv[2]
if hook:
    module, _, function = hook.partition(":")
    try:
        getattr(importlib.import_module(module), function)()
    except BaseException as exc:
        failed.append(["setup", hook, f"{type(exc).__name__}: {exc}"[:300]])
for name in sys.argv[3:] if not failed else ():
    try:
        importlib.import_module(name)
    except BaseException as exc:  # a module may even call sys.exit
        if len(failed) < 20:
            failed.append(["import", name, f"{type(exc).__name__}: {exc}"[:300]])
out.write(json.dumps(failed))
out.close()
os._exit(0)
"""


def check_directory(program: ProgramConfig, path: Path) -> list[str]:
    """A warning: `directory:` is missing on this host, so every child would fail to
    start here (a config checked on a build host may name a directory of the servers)."""
    if program.directory and not Path(program.directory).is_dir():
        return [f"{path}: directory: {program.directory[:200]!r} does not exist on this "
                f"host (its children would go FATAL here)"]
    return []


def check_imports(program: WorkerProgram, path: Path) -> list[str]:
    """One `path: import: problem` line per module that cannot be imported, or one
    `path: setup: problem` line."""
    if not program.imports and not program.setup:
        return []
    if program.directory and not Path(program.directory).is_dir():
        return [f"{path}: directory: {program.directory!r} does not exist (imports not checked)"]
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, str(write_fd), program.setup or "",
             *program.imports],
            cwd=program.directory or None, env={**os.environ, **program.environment},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,), start_new_session=True)
    finally:
        os.close(write_fd)
    # Read without blocking once the checker has exited: a daemon a job module started
    # may still hold the pipe open. The verdict is small, so it fits in the pipe.
    os.set_blocking(read_fd, False)
    with os.fdopen(read_fd, "rb") as verdict:
        try:
            proc.wait(IMPORT_CHECK_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return [f"{path}: import: importing {', '.join(program.imports)} took longer "
                    f"than {IMPORT_CHECK_TIMEOUT:g} s"]
        text = verdict.read() or b""
    return _problems(path, text, proc.returncode)


def _problems(path: Path, text: bytes, returncode: int) -> list[str]:
    try:
        failed = json.loads(text)
    except ValueError:
        return [f"{path}: import: the import check exited with code {returncode} "
                f"before finishing (does a module call os._exit or crash the interpreter?)"]
    return ConfigError([f"{path}: setup: {name!r} failed: {why}" if key == "setup"
                        else f"{path}: import: cannot import {name!r}: {why}"
                        for key, name, why in failed]).problems


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
