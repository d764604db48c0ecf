"""The private server module: start, persistence across restart, clean stop."""

from pathlib import Path

import redis

from supervisor_q.queue.server import RedisServer, find_server_binary


def test_binary_is_found() -> None:
    assert Path(find_server_binary()).exists()


def test_data_survives_restart_with_append_only_file(short_tmp: Path) -> None:
    server = RedisServer(data_dir=short_tmp / "data")
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.rpush("k", "a", "b")
        client.close()
        server.restart()
        client = redis.Redis.from_url(server.url)
        assert client.lrange("k", 0, -1) == [b"a", b"b"]
        client.close()
    finally:
        server.stop()
    assert not server.alive()
    assert (short_tmp / "data" / "appendonlydir").is_dir()


def test_socket_is_owner_only(short_tmp: Path) -> None:
    server = RedisServer(data_dir=short_tmp / "d")
    server.start()
    try:
        assert (server.unix_socket.stat().st_mode & 0o777) == 0o700
    finally:
        server.stop()
