"""Redis Cluster: a RedisCluster client for `redis+cluster://` and `rediss+cluster://` URLs.

`redis+cluster://[user:pass@]host1:7000,host2:7001[/0]` lists startup nodes (any
reachable one is enough: redis-py discovers the rest and follows MOVED/ASK, failovers
included); `rediss+cluster://` is the same over TLS. Query options (e.g.
`?ssl_cert_reqs=none`) are passed on as for a plain URL. What a queue costs on a
cluster, and which keys live where: keys.py and README.md. Imports only paths and faults
(the message RedisCluster gives when no node answers).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import Connection, Encoder, parse_url
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)

from supervisor_q.paths import BadRedisUrl, redact
from supervisor_q.queue.faults import CLUSTER_UNREACHABLE

SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
_EXAMPLE = "(e.g. redis+cluster://HOST:7000,HOST:7001)"


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SCHEMES


def is_cluster(client: object) -> bool:
    """True for a RedisCluster client (whose commands redis-py routes by key slot)."""
    return isinstance(client, RedisCluster)


def cluster_client(url: str, **options: Any) -> RedisCluster:
    """A RedisCluster for a redis+cluster:// or rediss+cluster:// URL; options go to
    RedisCluster (and through it to each node's connections). Raises BadRedisUrl; a
    cluster no listed node answers is retried on first use (LazyCluster)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise _bad(url, f"the scheme must be "
                          f"redis+cluster:// or rediss+cluster:// {_EXAMPLE}")
    parts = _split(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    nodes = [_node(url, item) for item in hostlist.split(",") if item.strip()]
    if not nodes:
        raise _bad(url, f"no host:port {_EXAMPLE}")
    if parts.path not in ("", "/", "/0"):
        raise _bad(url, "a cluster has only database 0")
    if userinfo:
        user, _, password = userinfo.partition(":")
        options.setdefault("username", unquote(user) or None)
        options.setdefault("password", unquote(password) or None)
    options.update(_query_options(url))  # the URL's word wins, as for a plain URL
    tls_class = options.pop("tls_connection_class", None)
    if SCHEMES[scheme.lower()] and tls_class is None:
        options["ssl"] = True
    elif SCHEMES[scheme.lower()]:
        # RedisCluster takes a node connection class only with a `url` (a plain one here,
        # so the class given is kept): the bounded TLS handshake of connection.py.
        options.update(connection_class=tls_class,
                       url=f"redis://{_url_host(nodes[0].host)}:{nodes[0].port}")
    options.pop("retry_on_timeout", None)  # RedisCluster retries timeouts by itself
    bounded = options.pop("bounded_refresh", False)
    try:
        return LazyCluster(bounded=bounded, startup_nodes=nodes, **options)
    except TypeError as exc:  # an unknown query option
        raise _bad(url, str(exc)) from None


class LazyCluster(RedisCluster):
    """A RedisCluster that may be made while no node answers (a master or `work`
    started before its cluster). RedisCluster reads the slot map when it is made; if
    that fails, this one is made again on first use, and until it succeeds every use
    raises redis.ConnectionError (a topology fault: callers retry with backoff).
    bounded=True (the master's client, which must not block): each remade try and each
    slot-map refresh asks one listed node, the next in turn (bound_refreshes)."""

    def __init__(self, bounded: bool = False, **options: Any) -> None:
        self.__dict__.update(_sq_options=options, _sq_state="new", _sq_error="",
                             _sq_bounded=bounded, _sq_turn=0)
        self.encoder = Encoder(options.get("encoding", "utf-8"),  # enough for Script
                               options.get("encoding_errors", "strict"),
                               options.get("decode_responses", False))
        self._sq_build()

    def _sq_build(self) -> bool:
        state = self.__dict__
        state["_sq_state"] = "building"
        options = state["_sq_options"]
        if state["_sq_bounded"] and state["_sq_turn"]:  # not the first try: one node
            nodes = options["startup_nodes"]
            options = {**options, "startup_nodes": [nodes[state["_sq_turn"] % len(nodes)]]}
        state["_sq_turn"] += 1
        try:
            RedisCluster.__init__(self, **options)
        except RedisClusterException as exc:
            state.update(_sq_state="down", _sq_error=str(exc).splitlines()[0])
            return False
        state["_sq_state"] = "up"
        if state.get("_sq_bounded"):
            self.bound_refreshes()
        return True

    def bound_refreshes(self) -> None:
        """For a caller that must not block (the master): redis-py re-reads the slot map
        inline after a failed call, asking every startup node in turn, each up to the
        socket timeout (7 s for a hung 6-node cluster). Here that refresh waits for the
        next call, which asks one node (the next in turn) before it goes on: a call then
        costs one node's timeout at most, and a failed refresh is a ConnectionError (a
        topology fault) that the next call tries again with the next node."""
        state, manager = self.__dict__, self.nodes_manager
        real = manager.initialize

        def initialize(*args: Any, **kwargs: Any) -> None:
            if state.get("_sq_refreshing"):
                real(*args, **kwargs)
            else:
                state["_sq_refresh_due"] = True

        manager.initialize = initialize
        state.update(_sq_real_initialize=real, _sq_refresh_due=False)

    def _sq_refresh_one(self) -> None:
        state, manager = self.__dict__, self.nodes_manager
        known = dict(manager.startup_nodes)
        node = list(known.values())[state["_sq_turn"] % len(known)]
        state["_sq_turn"] += 1
        manager.startup_nodes = {node.name: node}
        state["_sq_refreshing"] = True
        try:
            state["_sq_real_initialize"]()
        except RedisClusterException as exc:
            first = (str(exc).splitlines() or [""])[0][:200]
            raise redis.ConnectionError(f"cluster slot map not read from {node.name}: "
                                        f"{first}") from None
        finally:
            state["_sq_refreshing"] = False
            for name, known_node in known.items():
                manager.startup_nodes.setdefault(name, known_node)
        state["_sq_refresh_due"] = False

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self.__dict__.get("_sq_refresh_due"):
            self._sq_refresh_one()
        try:
            return super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:  # not a RedisError: callers would miss it
            if not str(exc).startswith(CLUSTER_UNREACHABLE):
                raise
            raise redis.ConnectionError(str(exc).splitlines()[0][:300]) from None

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        if self.__dict__.get("_sq_refresh_due"):
            self._sq_refresh_one()
        return super().pipeline(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only for attributes the made client would have (RedisCluster has no pool).
        if (self.__dict__.get("_sq_state") != "down" or name.startswith("__")
                or name == "connection_pool"):
            raise AttributeError(name)
        if not self._sq_build():
            raise redis.ConnectionError(self.__dict__["_sq_error"])
        return getattr(self, name)

    def close(self) -> None:
        if self.__dict__.get("_sq_state") == "up":
            super().close()


def cluster_twin(url: str) -> str:
    """The plain redis:// (rediss://) URL carrying url's query: its options are read (and
    checked, connection.py) by the plain URL's rules."""
    scheme = url.partition("://")[0].lower()
    query = _split(url).query
    return f"{'rediss' if SCHEMES.get(scheme) else 'redis'}://localhost/?{query}"


def _split(url: str) -> SplitResult:
    try:
        return urlsplit("redis://" + url.partition("://")[2])
    except ValueError as exc:  # an unclosed IPv6 bracket
        raise _bad(url, f"{exc} (an IPv6 address goes in brackets, [ADDRESS]:PORT)") from None


def _query_options(url: str) -> dict[str, Any]:
    """url's query options typed as for a plain URL (?socket_timeout=5 -> 5.0)."""
    try:
        parsed = parse_url(cluster_twin(url))
    except ValueError as exc:
        raise _bad(url, str(exc)) from None
    for key in ("host", "port", "db", "connection_class"):
        parsed.pop(key, None)
    return parsed


def _bad(url: str, why: str) -> BadRedisUrl:
    """One line naming url, its password and secret options masked (paths.redact)."""
    return BadRedisUrl(f"bad Redis Cluster URL {redact(url)!r}: {redact(url, why)}")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _node(url: str, item: str) -> ClusterNode:
    host, _, port = item.strip().rpartition(":")
    if host.startswith("[") != host.endswith("]") or "[" in host[1:] or "]" in host[:-1]:
        raise _bad(url, f"{item.strip()[:60]!r}: an IPv6 address goes in brackets, "
                        f"[ADDRESS]:PORT {_EXAMPLE}")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(url, f"{item.strip()!r} is not "
                          f"host:port {_EXAMPLE}")
    return ClusterNode(host.strip("[]"), int(port))


# Replies that mean "this node no longer serves that slot (or not now)": the hot path
# refreshes the slot map and the caller retries, as after a dropped connection.
TOPOLOGY_ERRORS: tuple[type[Exception], ...] = (
    MovedError, AskError, ClusterDownError, TryAgainError, ReadOnlyError)


class TopologyChanged(redis.ConnectionError):
    """A node answered MOVED/ASK/CLUSTERDOWN/TRYAGAIN/READONLY, or is gone: retry later."""


class NodeConnections:
    """The worker hot path's own connection to each cluster node (see RedisQueue._eval):
    one per node, made lazily, never used across fork; after a topology error the slot
    map is refreshed from the cluster before the next use."""

    def __init__(self, client: RedisCluster) -> None:
        self.client = client
        self.conns: dict[str, Connection] = {}
        self.stale = False
        self.pid = os.getpid()

    def for_key(self, key: str) -> tuple[Connection, redis.Redis]:
        """The connection to the primary serving key's slot, and that node's client."""
        if self.pid != os.getpid():
            self.conns, self.pid = {}, os.getpid()
        if self.stale:
            self.refresh()
        node = self.client.get_node_from_key(key)
        conn = self.conns.get(node.name)
        if conn is None:
            conn = self.conns[node.name] = node.redis_connection.connection_pool.make_connection()
        return conn, node.redis_connection

    def refresh(self) -> None:
        self.drop()
        try:
            self.client.nodes_manager.initialize()
        except RedisClusterException as exc:  # no node reachable: still "unavailable"
            raise TopologyChanged(str(exc)) from None
        self.stale = False

    def drop(self) -> None:
        for conn in self.conns.values():
            conn.disconnect()
        self.conns = {}

