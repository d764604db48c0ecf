"""`supervisor-q tail [-f] [-n LINES] PROGRAM[#N] [--stderr]` and `tail -f --master`.

The master says where a process's output is: its log file (read here, followed across
rotations) or its in-memory ring, read over the control socket from an offset (`-f`
asks again every POLL seconds). `--master` is the master's own log, from its ring."""

from __future__ import annotations

import argparse
import os
import sys
import time

from supervisor_q import paths
from supervisor_q.ctl.protocol import ControlError, request

POLL = 0.2  # seconds between two looks for new output with -f
FILE_TAIL = 1 << 20  # bytes of a log file read for its last lines


def add_tail_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("tail", help="a program's recent output, or the master's log")
    t.add_argument("program", nargs="?", metavar="PROGRAM[#N]",
                   help="program, and process number (default: its first process)")
    t.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    t.add_argument("-n", "--lines", type=int, default=10, help="lines to print (default 10)")
    t.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    t.add_argument("--master", action="store_true", help="the master's own log")
    t.set_defaults(handler=cmd_tail)


def cmd_tail(args: argparse.Namespace) -> int:
    if args.master == bool(args.program) or args.lines < 0:
        return _error("name a PROGRAM[#N] or --master (and -n >= 0)", 2)
    query: dict[str, object] = {"stream": "master", "lines": args.lines}
    if args.program:
        name, _, number = args.program.partition("#")
        if number and not number.isdigit():
            return _error(f"bad process number in {args.program!r} (e.g. emails#2)", 2)
        query = {"program": name, "slot": int(number) if number else None,
                 "stream": "stderr" if args.stderr else "stdout", "lines": args.lines}
    socket_path = paths.control_socket(args.socket)
    try:
        answer = request(socket_path, "tail", **query)
        if "file" in answer:
            return _tail_file(answer["file"], args.lines, args.follow)
        _print(answer["data"])
        while args.follow:
            time.sleep(POLL)
            answer = request(socket_path, "tail", **query, after=answer["offset"])
            _print(answer["data"])
    except ControlError as exc:
        return _error(str(exc), 1)
    return 0


def _print(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def _error(message: str, code: int) -> int:
    print(f"supervisor-q tail: {message}", file=sys.stderr)
    return code


def last_lines(data: bytes, count: int) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-count:]) if count else b""


def _tail_file(path: str, count: int, follow: bool) -> int:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - kept open while following
    except FileNotFoundError:
        if not follow:
            return 0  # nothing written yet
        handle = None
    except OSError as exc:
        return _error(f"cannot read {path}: {exc.strerror or exc}", 1)
    if handle is not None:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - FILE_TAIL))
        _print(last_lines(handle.read(), count).decode("utf-8", "replace"))
    while follow:
        time.sleep(POLL)
        handle = _follow(path, handle)
    return 0


def _follow(path: str, handle):  # noqa: ANN001, ANN202 - a binary file or None
    """Print what was appended; open the path again after a rotation or truncation."""
    if handle is not None:
        _print(handle.read().decode("utf-8", "replace"))
    try:
        now = os.stat(path)
    except OSError:
        return handle
    if handle is None or now.st_ino != os.fstat(handle.fileno()).st_ino \
            or now.st_size < handle.tell():
        if handle is not None:
            handle.close()
        try:
            handle = open(path, "rb")  # noqa: SIM115
        except OSError:
            return None
        _print(handle.read().decode("utf-8", "replace"))
    return handle
