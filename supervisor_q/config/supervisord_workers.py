"""Queue-worker commands in Supervisor programs, and the worker program to suggest.

`php artisan queue:work`, `celery ... worker`, `rq worker` and `supervisor-q work`
stay command programs when imported (they keep working as they are). Beside them
`import-supervisord` prints a supervisor-q worker program: exact for `supervisor-q
work` (its flags are the program keys), a starting point for the others (their
jobs must become supervisor-q @job functions first).
"""

from __future__ import annotations

import os
from typing import Any

# Option of the worker command -> (program key, converter). Laravel's and supervisor-q's
# `work` share most of them on purpose.
_COMMON: dict[str, tuple[str, Any]] = {
    "--tries": ("tries", int), "--timeout": ("timeout", int), "--sleep": ("sleep", float),
    "--rest": ("rest", float), "--max-jobs": ("max_jobs", int),
    "--max-time": ("max_time", int), "--memory": ("memory", int),
}
_SUPERVISOR_Q = {**_COMMON, "--prefetch": ("prefetch", int),
                 "--keep-jobs": ("keep_jobs", float), "--keep-jobs-max": ("keep_jobs_max", int)}
_CELERY = {"--concurrency": ("numprocs", int), "-c": ("numprocs", int),
           "--max-tasks-per-child": ("max_jobs", int), "--time-limit": ("timeout", int)}


def _options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """`--opt=value`, `--opt value` and `-o value` pairs, and the positional words."""
    options: dict[str, str] = {}
    words: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("-") and "=" in token:
            key, _, value = token.partition("=")
            options[key] = value
        elif token.startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            options[token] = argv[i + 1]
            i += 1
        elif token.startswith("-"):
            options[token] = ""
        else:
            words.append(token)
        i += 1
    return options, words


def _names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _apply(options: dict[str, str], table: dict[str, tuple[str, Any]],
           program: dict[str, Any]) -> None:
    for option, (key, convert) in table.items():
        if options.get(option):
            try:
                program[key] = convert(options[option])
            except ValueError:
                continue


def worker_kind(argv: list[str]) -> str | None:
    """Which queue worker a command runs, if any."""
    names = [os.path.basename(token) for token in argv]
    if "artisan" in names and ("queue:work" in argv or "queue:listen" in argv):
        return "Laravel's queue:work"
    if "celery" in names and "worker" in argv:
        return "a Celery worker"
    if ("rq" in names and "worker" in argv) or "rqworker" in names:
        return "an RQ worker"
    if ("supervisor-q" in names or "supervisor_q" in argv) and "work" in argv:
        return "supervisor-q work"
    return None


def suggest_worker(argv: list[str], name: str, numprocs: int) -> tuple[str, dict[str, Any]] | None:
    """(what the command runs, a worker program for it), or None for other commands."""
    kind = worker_kind(argv)
    if kind is None:
        return None
    options, words = _options(argv[argv.index("work") + 1:] if kind == "supervisor-q work"
                              else argv)
    program: dict[str, Any] = {"queues": ["default"]}
    if kind == "supervisor-q work":
        program["queues"] = _names(options.get("--queue", "")) or ["default"]
        if options.get("--import"):
            program["import"] = _names(options["--import"])
        if options.get("--backoff"):
            program["backoff"] = [int(float(b)) for b in _names(options["--backoff"])]
        _apply(options, _SUPERVISOR_Q, program)
    elif kind.startswith("Laravel"):
        program["queues"] = _names(options.get("--queue", "")) or ["default"]
        _apply(options, _COMMON, program)
    elif kind.startswith("a Celery"):
        program["queues"] = _names(options.get("-Q") or options.get("--queues", "")) or ["celery"]
        app = options.get("-A") or options.get("--app")
        if app:
            program["import"] = [app.split(":")[0]]
        _apply(options, _CELERY, program)
    else:  # rq worker q1 q2
        queues = [w for w in words[words.index("worker") + 1:]] if "worker" in words else []
        program["queues"] = queues or ["default"]
    program.setdefault("numprocs", numprocs)
    return kind, {"name": name if kind == "supervisor-q work" else f"{name}-sq", **program}
