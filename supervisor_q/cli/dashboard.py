"""`supervisor-q dashboard`: the web dashboard (supervisor_q/web) over the fleet's Redis."""

from __future__ import annotations

import argparse
import sys

from supervisor_q.paths import resolve_redis_url

DEFAULT_BIND = "127.0.0.1:8787"


def add_dashboard_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dashboard", help="the web dashboard (loopback unless --token-file)")
    d.add_argument("--bind", default=DEFAULT_BIND, help=f"HOST:PORT (default {DEFAULT_BIND})")
    d.add_argument("--token-file", default=None,
                   help="a file holding the access token (required for non-loopback binds)")
    d.add_argument("--redis-url", default=argparse.SUPPRESS,
                   help="the fleet's Redis (else SUPERVISOR_Q_REDIS_URL or the embedded one)")
    d.set_defaults(handler=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from supervisor_q.web.security import BindRefused, listen

    url = resolve_redis_url(args.redis_url)
    try:
        sock, token = listen(args.bind, args.token_file)
    except BindRefused as exc:
        print(f"supervisor-q dashboard: {exc}", file=sys.stderr)
        return 2
    from supervisor_q.web.serve import open_queue, serve

    queue = open_queue(url)  # a bad URL is refused before the banner
    print(f"supervisor-q dashboard on http://{args.bind}/ (Redis {_safe(url)})",
          file=sys.stderr, flush=True)
    serve(sock, token, queue, url)
    return 0


def _safe(url: str) -> str:
    """The URL without a password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
