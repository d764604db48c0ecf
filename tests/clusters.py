"""A Redis Cluster on loopback for tests: 3 primaries and 3 replicas of valkey-server
(cluster-enabled), joined by valkey-cli --cluster create, all stopped at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from supervisor_q.queue.server import find_server_binary
from tests.helpers import wait_until

NODE_TIMEOUT_MS = 1000  # low, so a replica is promoted within a few seconds of a kill


def free_ports(count: int) -> list[int]:
    """Ports free on loopback now, each with its cluster bus port (+10000) free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


class LocalCluster:
    """Six cluster-enabled servers in a temp dir: start(), url, client(), kill(port), stop().

    announce: {node port: port to announce} (e.g. a proxy's in front of it): the node
    then names 127.0.0.1:<that port> in CLUSTER SLOTS/SHARDS/NODES and MOVED replies,
    its bus port staying direct (node port + 10000)."""

    def __init__(self, root: Path, nodes: int = 6, ports: list[int] | None = None,
                 announce: dict[int, int] | None = None) -> None:
        self.root = root
        self.ports = ports or free_ports(nodes)
        self.announce = announce or {}
        self.procs: dict[int, subprocess.Popen] = {}
        server = find_server_binary()
        self.server = server
        self.cli = str(Path(server).with_name("valkey-cli"))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def start(self) -> None:
        for port in self.ports:
            self._start_node(port)
        for port in self.ports:
            wait_until(lambda p=port: self.procs[p].poll() is not None or self._pings(p),
                       timeout=10, message=f"node {port} up")
        for port in self.ports:  # (a ping may have reached whoever took its port)
            if self.procs[port].poll() is not None:
                raise NodeDidNotStart(f"node {port} exited at start (its port, or its bus "
                                      f"port {port + 10000}, taken meanwhile?)")
        subprocess.run(
            [self.cli, "--cluster", "create",
             *[f"127.0.0.1:{self.announce.get(p, p)}" for p in self.ports],
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=30)
        wait_until(self.healthy, timeout=20, message="cluster state ok on every node")

    def _start_node(self, port: int) -> None:
        node_dir = self.root / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        announce = [] if port not in self.announce else [
            "--cluster-announce-ip", "127.0.0.1",
            "--cluster-announce-port", str(self.announce[port]),
            "--cluster-announce-bus-port", str(port + 10000)]
        self.procs[port] = subprocess.Popen(
            [self.server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             "--dir", str(node_dir), "--appendonly", "yes", "--save", "",
             "--logfile", "server.log", "--protected-mode", "no", *announce],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def _pings(self, port: int) -> bool:
        try:
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def healthy(self) -> bool:
        for port, proc in self.procs.items():
            if proc.poll() is not None:
                continue
            try:
                info = redis.Redis(port=port, socket_timeout=1).cluster("info")
            except redis.RedisError:
                return False
            if info.get("cluster_state") != "ok":
                return False
        return True

    def client(self) -> RedisCluster:
        return RedisCluster(host="127.0.0.1", port=self.ports[0])

    def primary_of(self, key: str) -> int:
        """The port of the primary that owns key's slot now."""
        client = self.client()
        try:
            return int(client.get_node_from_key(key).port)
        finally:
            client.close()

    def kill(self, port: int) -> None:
        os.kill(self.procs[port].pid, signal.SIGKILL)
        self.procs[port].wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class NodeDidNotStart(RuntimeError):
    """A node exited as it started: free_ports() found its ports free, but another test's
    server may take one before the node binds it."""


@contextmanager
def running_cluster(prefix: str = "sq-cluster-") -> Iterator[LocalCluster]:
    """A started LocalCluster in a temporary directory, stopped (and removed) after; a
    node that could not start on its ports is tried again, up to twice, on new ones."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        for attempt in range(3):
            cluster = LocalCluster(Path(tmp) / str(attempt))
            try:
                cluster.start()
                break
            except BaseException as exc:
                cluster.stop()
                if not isinstance(exc, NodeDidNotStart) or attempt == 2:
                    raise
        try:
            yield cluster
        finally:
            cluster.stop()
