"""The pipes that capture a child's stdout and stderr (master/output.py reads them).

Made before the fork: the child puts the write ends on its fds 1 and 2 (stderr on the
stdout pipe with redirect_stderr), the master keeps the read ends, non-blocking, on its
selector. A child never inherits the master's own stdout or stderr.
"""

from __future__ import annotations

import fcntl
import os
import sys

from supervisor_q.config.loading import ProgramConfig
from supervisor_q.logs import use_child_format
from supervisor_q.master.logfile import drop_master_ring

Pipes = dict[str, tuple[int, int]]  # stream -> (read end, write end)


def _widen(fd: int) -> None:
    """1 MiB of pipe: a burst of output waits in the kernel, not in the child's write."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (OSError, AttributeError):  # not Linux, or a lower pipe-max-size
        pass


def make_pipes(program: ProgramConfig) -> Pipes:
    streams = ("stdout",) if program.redirect_stderr else ("stdout", "stderr")
    pipes: Pipes = {}
    for stream in streams:
        pipes[stream] = os.pipe()  # both ends close-on-exec
        _widen(pipes[stream][1])
    return pipes


def in_child(pipes: Pipes, program: ProgramConfig) -> None:
    """The child's side: the write ends become fds 1 and 2; the rest is closed."""
    out = pipes["stdout"][1]
    err = pipes["stderr"][1] if "stderr" in pipes else out
    onto_stdio(out, err, program)
    for read_end, write_end in pipes.values():
        os.close(read_end)
        os.close(write_end)


def onto_stdio(out: int, err: int, program: ProgramConfig) -> None:
    """Make the write ends `out` and `err` fds 1 and 2 (a preload zygote's child gets
    them over its socket, master/zygote.py); the caller closes the originals."""
    os.dup2(out, 1)  # dup2's copies are inheritable: an exec'd command keeps them
    os.dup2(err, 2)
    try:  # a job's print() reaches the pipe at each newline, not at a buffer's end
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass
    drop_master_ring()  # the master's in-memory log: a child's lines reach it by the pipe
    if program.logfile("stderr") is None:
        use_child_format()


def in_master(pipes: Pipes) -> dict[str, int]:
    """The master's side: close the write ends; the read ends, non-blocking, by stream."""
    fds = {}
    for stream, (read_end, write_end) in pipes.items():
        os.close(write_end)
        os.set_blocking(read_end, False)
        fds[stream] = read_end
    return fds


def close_all(pipes: Pipes) -> None:
    """The fork failed: close both ends."""
    for read_end, write_end in pipes.values():
        os.close(read_end)
        os.close(write_end)
