"""Redis URLs -> clients: plain, TLS, unix socket, Sentinel (and Cluster, in cluster.py).

Accepted wherever a URL is (SUPERVISOR_Q_REDIS_URL, --redis-url, connection=):

    redis://[user:pass@]HOST:6379/DB          rediss://...  (TLS)
    unix://[user:pass@]/PATH/redis.sock?db=DB
    redis+sentinel://[user:pass@]H1:26379,H2:26379/SERVICE[/DB]   rediss+sentinel://...
    redis+cluster://H1:7000,H2:7001           rediss+cluster://...

A Sentinel URL gives a redis-py `Sentinel(...).master_for(SERVICE)` client: it asks
the sentinels for the primary on every (re)connect, so it follows a failover. The
user and password authenticate to the primary; `?sentinel_password=` (if the
sentinels require one) to the sentinels. A malformed URL raises BadRedisUrl with
one line, before any connection is made. Imports only paths and cluster.
"""

from __future__ import annotations

import functools
import inspect
import socket
import ssl
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
import redis.utils
from redis.backoff import NoBackoff
from redis.connection import Connection, SSLConnection, parse_url
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelManagedConnection

from supervisor_q.paths import BadRedisUrl, check_database, redact
from supervisor_q.queue.cluster import cluster_client, cluster_twin

__all__ = ["BadRedisUrl", "SentinelUrl", "connect", "parse_sentinel_url"]

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_EXAMPLES = ("e.g. redis://HOST:6379/0, unix:///PATH/redis.sock?db=0, "
             "redis+sentinel://HOST1:26379,HOST2:26379/mymaster/0 or "
             "redis+cluster://HOST1:7000,HOST2:7001")
PLAIN_SCHEMES = ("redis", "rediss", "unix")
# Query options a Sentinel URL may carry (anything else is a typo worth reporting).
_SENTINEL_QUERY = ("sentinel_password", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile",
                   "ssl_keyfile")
_MAX_SHOWN = 200  # characters of a bad URL echoed back


class SentinelUrl:
    """The parts of a redis+sentinel:// URL."""

    def __init__(self, sentinels: list[tuple[str, int]], service: str, db: int,
                 username: str | None, password: str | None, tls: bool,
                 query: dict[str, str]) -> None:
        self.sentinels = sentinels
        self.service = service
        self.db = db
        self.username = username
        self.password = password
        self.tls = tls
        self.query = query


# redis-py (7.1+) reads its version from the installed package metadata for every client
# and connection (importlib.metadata scans sys.path): megabytes of short-lived objects
# per call. Once per process is enough; a preload zygote's children then share it.
redis.utils.get_lib_version = functools.cache(redis.utils.get_lib_version)


def connect(url: str, *, socket_timeout: float | None = 30.0,
            connect_timeout: float = 5.0, retries: bool = True) -> redis.Redis:
    """A client for url; callers that block (BLPOP) pass a socket_timeout above the block.
    retries=False (the master's client): a cluster client retries no call by itself
    (redis-py's RedisCluster tries 3 more times), so one call stays within its timeout."""
    options: dict[str, Any] = {"socket_timeout": socket_timeout,
                               "socket_connect_timeout": connect_timeout,
                               "health_check_interval": 30, "retry_on_timeout": False}
    if not url.startswith("unix:"):
        options["socket_keepalive"] = True  # notice a dead peer behind a silent network
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in SENTINEL_SCHEMES:
        return sentinel_client(parse_sentinel_url(url), **options)
    if scheme in CLUSTER_SCHEMES:
        _check_options(url, cluster_twin(url))
        if not retries:  # and a slot-map refresh asks one node per call (cluster.py)
            options.update(retry=Retry(NoBackoff(), 0), bounded_refresh=True)
        # rediss+cluster: each node's TLS handshake bounded as for rediss:// (below)
        return cluster_client(url, tls_connection_class=BoundedHandshakeSSLConnection,
                              **options)
    if scheme not in PLAIN_SCHEMES:
        known = (*PLAIN_SCHEMES, *SENTINEL_SCHEMES, *CLUSTER_SCHEMES)
        raise _bad(url, f"unknown scheme {scheme[:20] + '://' if scheme else '(none)'}; "
                        f"known: {', '.join(s + '://' for s in known)}")
    if scheme == "rediss":
        options["connection_class"] = BoundedHandshakeSSLConnection
    try:
        check_database(url)
        _check_options(url)
        return redis.Redis.from_url(url, **options)
    except BadRedisUrl:
        raise
    except ValueError as exc:  # parsed here, before any connection: a user's typo
        raise _bad(url, str(exc)) from None


class BoundedHandshakeSSLConnection(SSLConnection):
    """redis-py's TLS connection, whose handshake is bounded by the connect timeout
    (5 s) instead of the socket timeout (30 s, or none): a rediss:// URL to a server
    that does not speak TLS fails in seconds, not after the socket timeout."""

    def _wrap_socket_with_ssl(self, sock: socket.socket) -> ssl.SSLSocket:
        sock.settimeout(self.socket_connect_timeout)
        try:
            wrapped: ssl.SSLSocket = super()._wrap_socket_with_ssl(sock)
        except TimeoutError:
            raise redis.TimeoutError(
                f"no TLS handshake from {self.host}:{self.port} within "
                f"{self.socket_connect_timeout:g} s (does the server speak TLS?)") from None
        wrapped.settimeout(self.socket_timeout)
        return wrapped


def sentinel_client(parsed: SentinelUrl, **options: Any) -> redis.Redis:
    """The primary of parsed.service through redis-py's Sentinel (follows failovers)."""
    tls = {k: v for k, v in parsed.query.items() if k.startswith("ssl_")}
    if parsed.tls:
        tls["ssl"] = True
    sentinel_options = {k: v for k, v in options.items()
                        if k.startswith("socket_") and k != "socket_keepalive"}
    sentinel_options.update(tls)
    # One try per sentinel and question: redis-py's default retries with backoff made
    # one "no primary" answer take ~8 s, stalling the master's loop; callers back off.
    sentinel_options["retry"] = Retry(NoBackoff(), 0)
    if parsed.query.get("sentinel_password"):
        sentinel_options["password"] = parsed.query["sentinel_password"]
    manager = _Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_options)
    if parsed.tls:  # the TLS handshake bounded by the connect timeout, as for rediss://
        for sentinel in manager.sentinels:
            sentinel.connection_pool.connection_class = BoundedHandshakeSSLConnection
        tls.pop("ssl")
        options["connection_class"] = _BoundedSentinelSSLConnection
    return manager.master_for(parsed.service, db=parsed.db, username=parsed.username,
                              password=parsed.password, **tls, **options)


class _BoundedSentinelSSLConnection(SentinelManagedConnection, BoundedHandshakeSSLConnection):
    """redis-py's SentinelManagedSSLConnection, with the bounded TLS handshake."""


class _Sentinel(Sentinel):
    """redis-py's Sentinel, whose "no primary" error is one bounded line naming the
    sentinels and the service (redis-py's own repeats each sentinel client's repr)."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        try:
            return super().discover_master(service_name)
        except MasterNotFoundError as exc:
            hosts = [f"{h}:{p}" for h, p in (
                (c.connection_pool.connection_kwargs.get("host"),
                 c.connection_pool.connection_kwargs.get("port")) for c in self.sentinels)]
            shown = ", ".join(hosts[:5]) + (f" and {len(hosts) - 5} more" if len(hosts) > 5
                                             else "")
            answered = "unreachable" not in _sentinel_errors(exc)
            why = ("none knows a primary for it" if answered
                   else "none answered (connection refused or timed out)")
            raise MasterNotFoundError(
                f"no Sentinel at {shown} named a primary for service "
                f"{service_name[:60]!r}: {why}") from None


def _sentinel_errors(exc: Exception) -> str:
    """'unreachable' when redis-py's message says every sentinel failed to connect."""
    text = str(exc)
    return "unreachable" if ("ConnectionError" in text or "TimeoutError" in text) else ""


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Split redis+sentinel://[user:pass@]h1:p1,h2:p2/SERVICE[/DB][?opts]; BadRedisUrl if not."""
    scheme, _, rest = url.partition("://")
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    sentinels = [_host_port(url, part) for part in netloc.split(",")]
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise _bad(url, "the path must be /SERVICE or /SERVICE/DB")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise _bad(url, f"database {parts[1][:20]!r} is not a number")
        db = int(parts[1])
    return SentinelUrl(sentinels, unquote(parts[0]), db, username, password,
                       SENTINEL_SCHEMES[scheme.lower()], _query(url, query_text))


def _host_port(url: str, part: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' (port 26379 if absent) of one sentinel."""
    if part.startswith("[") != ("]" in part):
        raise _bad(url, f"sentinel {part[:60]!r}: an IPv6 address goes in brackets, "
                        "[ADDRESS]:PORT")
    if part.startswith("["):
        host, _, tail = part[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else (tail or "26379")
    else:
        host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "26379")
    if not host:
        raise _bad(url, "every sentinel needs a host (HOST:PORT, separated by commas)")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad(url, f"sentinel port {port_text[:20]!r} is not a port number")
    return host, int(port_text)


def _query(url: str, text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, values in parse_qs(text, keep_blank_values=True).items():
        if key not in _SENTINEL_QUERY:
            raise _bad(url, f"unknown option {key[:40]!r} (known: {', '.join(_SENTINEL_QUERY)})")
        found[key] = values[-1]
    return found


def _check_options(url: str, twin: str | None = None) -> None:
    """A query option the connection does not take (redis-py would raise TypeError at
    the first command, or a cluster ignore it) or a value it cannot read is a user's
    typo: BadRedisUrl now, naming it. twin: the plain URL whose query is url's (cluster)."""
    try:
        parsed = parse_url(twin or url)
    except ValueError as exc:  # a value of the wrong type, e.g. ?socket_timeout=abc
        raise _bad(url, str(exc)) from None
    kind = parsed.pop("connection_class", Connection)
    unknown = sorted(set(parsed) - _known_options(kind))
    if unknown:
        raise _bad(url, f"unknown option {unknown[0][:40]!r} for {url.split(':', 1)[0]}://")


@functools.cache
def _known_options(kind: type) -> frozenset[str]:
    """The keyword arguments of kind's __init__s. Cached: inspect.signature churns through
    megabytes of objects, once per process is enough (a child forked after the master's
    first connect, or from a preload zygote, inherits the answer instead)."""
    known = {"host", "port", "db", "username", "password", "path"}
    for cls in inspect.getmro(kind):
        if "__init__" in vars(cls):
            known.update(p for p in inspect.signature(cls.__init__).parameters
                         if p not in ("self", "args", "kwargs"))
    return frozenset(known)


def _bad(url: str, why: str) -> BadRedisUrl:
    shown = redact(url)  # never echo a password or a secret option
    shown = shown if len(shown) <= _MAX_SHOWN else shown[:_MAX_SHOWN] + "..."
    shown = shown.replace("\n", "\\n").replace("\r", "\\r")
    return BadRedisUrl(f"bad Redis URL {shown!r}: {redact(url, why)} ({_EXAMPLES})")
