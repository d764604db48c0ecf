"""A TLS-terminating proxy for tests (the embedded valkey-server has no TLS): asyncio +
ssl in a daemon thread of the test process, in front of a plain TCP port, with
certificates from trustme. Clients then speak rediss:// to the proxy."""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import threading
from pathlib import Path

import trustme


class TlsFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1")
        client = self.ca.issue_cert("client@example.org")
        self.ca_file = directory / "ca.pem"
        self.server_file = directory / "server.pem"
        self.client_cert = directory / "client.pem"
        self.client_key = directory / "client.key"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server.private_key_and_cert_chain_pem.write_to_path(str(self.server_file))
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))

    def query(self) -> str:
        """The rediss:// query that trusts the CA and presents the client certificate."""
        return (f"ssl_ca_certs={self.ca_file}&ssl_certfile={self.client_cert}"
                f"&ssl_keyfile={self.client_key}")


class TlsProxy:
    """Listens with TLS on 127.0.0.1:port (client certificate required) and forwards
    each connection to 127.0.0.1:target."""

    def __init__(self, files: TlsFiles, target: int) -> None:
        self.target = target
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(files.server_file))
        self.context.load_verify_locations(str(files.ca_file))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TlsProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("TLS proxy did not start")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self.context))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def stop(self) -> None:
        """Cancels the relays and closes their sockets while the loop still runs (a relay
        left pending would close its socket on a closed loop when it is collected)."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_cancel_others(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_others() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        writer.close()


class SniffingProxy:
    """Forwards each connection on 127.0.0.1:port to 127.0.0.1:target, terminating TLS
    for connections that start with a TLS handshake and passing plain ones through as
    they are. Valkey processes (sentinels, replicas) then reach a node through the same
    address a TLS client is given, which is what sentinels announce. Threads, one pair
    per connection: enough for a test deployment."""

    def __init__(self, files: TlsFiles) -> None:
        self.target = 0  # set before the first connection arrives
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(files.server_file))
        self.context.load_verify_locations(str(files.ca_file))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.tls_connections = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if first == b"\x16":  # a TLS handshake record
                sock = self.context.wrap_socket(sock, server_side=True)
                self.tls_connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            sock.close()
            return
        _relay(sock, upstream)

    def stop(self) -> None:
        self.closed = True
        self.listener.close()


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy both ways in one thread (an SSL socket must not be read and written from two
    threads at once), until either side closes."""
    other = {client: upstream, upstream: client}
    pending = getattr(client, "pending", lambda: 0)
    try:
        while True:
            ready = [client] if pending() else select.select([client, upstream], [], [])[0]
            for source in ready:
                data = source.recv(65536)
                if not data:
                    return
                other[source].sendall(data)
    except OSError:
        pass
    finally:
        client.close()
        upstream.close()
