"""The `supervisor-q` command: argument parsing and routing to the command modules."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from supervisor_q import __version__
from supervisor_q.cli.batches import add_batch_parsers
from supervisor_q.cli.completion import add_completion_parser
from supervisor_q.cli.dashboard import add_dashboard_parser
from supervisor_q.cli.importing import add_import_parser
from supervisor_q.cli.jobs import add_job_parsers, add_work_parser
from supervisor_q.cli.lookup import add_lookup_parser
from supervisor_q.cli.master import add_master_parsers
from supervisor_q.cli.periodic import add_periodic_parser
from supervisor_q.cli.signals import add_signal_parsers
from supervisor_q.cli.tail import add_tail_parser
from supervisor_q.cli.top import add_top_parser
from supervisor_q.paths import BadRedisUrl, RuntimeDirLocked, redact

# Exit codes of the command itself: 2 = it could not run as given (bad arguments, a
# malformed URL, a runtime dir or socket this user cannot read); 1 = it ran and failed
# (Redis unreachable or erroring, no master listening, no such job).
USAGE_ERROR = 2
FAILED = 1


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="supervisor-q",
        description="A process manager for Python queue workers.")
    parser.add_argument("--version", action="version", version=f"supervisor-q {__version__}")
    _add_global_options(parser, {"redis_url": None, "socket": None, "log_format": "text"})
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_work_parser(sub)
    add_job_parsers(sub)
    add_batch_parsers(sub)
    add_lookup_parser(sub)
    add_master_parsers(sub)
    add_periodic_parser(sub)
    add_dashboard_parser(sub)
    add_top_parser(sub)
    add_import_parser(sub)
    add_signal_parsers(sub)
    add_completion_parser(sub, build_parser)
    add_tail_parser(sub)
    _accept_globals_after(parser)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, defaults: dict[str, object]) -> None:
    """--redis-url, --socket, --log-format; a subcommand's copy defaults to SUPPRESS, so
    a value given before the subcommand is kept unless repeated after it."""
    options = {
        "--redis-url": dict(help="Redis URL (else SUPERVISOR_Q_REDIS_URL, else the embedded "
                                 "server)"),
        "--socket": dict(help="control socket of a running master (else SUPERVISOR_Q_SOCKET)"),
        "--log-format": dict(choices=["text", "json"],
                             help="the master's and workers' log lines (default: text)"),
    }
    for flag, kwargs in options.items():
        if flag not in parser._option_string_actions:  # dashboard has its own --redis-url
            dest = flag[2:].replace("-", "_")
            parser.add_argument(flag, default=defaults.get(dest, argparse.SUPPRESS), **kwargs)


def _accept_globals_after(parser: argparse.ArgumentParser) -> None:
    """The global options, accepted after every subcommand too (nested ones included)."""
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        for child in dict.fromkeys(action.choices.values()):
            _add_global_options(child, {})
            _accept_globals_after(child)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except (BadRedisUrl, RuntimeDirLocked) as exc:
        return _one_line(args, str(exc), USAGE_ERROR)
    except Exception as exc:  # a clear one-line error instead of a traceback
        from redis import RedisError

        from supervisor_q.queue.faults import cluster_node_hint

        hint = cluster_node_hint(exc, _shown_url(args))
        if hint:
            return _one_line(args, hint, FAILED)
        if isinstance(exc, RedisError):
            return _one_line(args, f"Redis error: {exc}", FAILED)
        raise


def _shown_url(args: argparse.Namespace) -> str:
    """The Redis URL the command used, as it may be shown (password masked)."""
    url = getattr(args, "redis_url", None) or os.environ.get("SUPERVISOR_Q_REDIS_URL")
    return redact(url)[:200] if url else "the Redis URL"


def _one_line(args: argparse.Namespace, message: str, code: int) -> int:
    """Known user-facing errors: one line, named after the command, no traceback."""
    flat = " ".join(message.split())
    print(f"supervisor-q {args.command}: {flat}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
