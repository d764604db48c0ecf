"""Bad and unreachable Redis URLs, as a user types them on the command line: one bounded
line, no traceback, and never a password or a secret option's value."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor_q.cli.main import main
from supervisor_q.queue.connection import connect
from supervisor_q.queue.server import RedisServer
from tests.cli.test_cli import assert_one_line, clean_env
from tests.sentinels import Node

SECRET = "S3cretPW"


def cli(url: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", url,
                           "queue", "size", "qa"], env=clean_env(), capture_output=True,
                          text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("url, says", [
    (f"redis+cluster://u:{SECRET}@127.0.0.1:abc", "is not host:port"),
    (f"redis+cluster://u:{SECRET}@127.0.0.1:21531/5", "only database 0"),
    (f"redis+cluster://u:{SECRET}@127.0.0.1:abc?password={SECRET}2", "is not host:port"),
    (f"redis+sentinel://u:{SECRET}@127.0.0.1:1/m/0?sentinel_password={SECRET}&bogus=1",
     "unknown option 'bogus'"),
    (f"rediss+sentinel://u:{SECRET}@127.0.0.1:1/m/x?sentinel_password={SECRET}",
     "is not a number"),
    (f"redis://u:{SECRET}@127.0.0.1:1/0?password={SECRET}2&bogus=1", "unknown option 'bogus'"),
    (f"redis://u:{SECRET}@127.0.0.1:1/x", "is not a number"),
    (f"unix://u:{SECRET}@/tmp/x.sock?db=0&token={SECRET}&bogus=1", "unknown option 'bogus'"),
    (f"foo://u:{SECRET}@h:1?auth_token={SECRET}", "unknown scheme foo://"),
    (f"redis+cluster://u:{SECRET}@127.0.0.1:21531?foo=1", "unknown option 'foo'"),
    (f"redis+cluster://u:{SECRET}@127.0.0.1:21531?socket_timeout=abc",
     "Invalid value for 'socket_timeout'"),
    (f"rediss+cluster://u:{SECRET}@127.0.0.1:1?ssl_cert_reqs=none&password={SECRET}2&bogus=1",
     "unknown option 'bogus' for rediss+cluster://"),
    (f"redis+sentinel://u:{SECRET}@127.0.0.1:1/m/0?socket_timeout=abc",
     "unknown option 'socket_timeout'"),
    (f"redis+sentinel://u:{SECRET}@[::1:41011/m/0", "an IPv6 address goes in brackets"),
    (f"redis+sentinel://u:{SECRET}@h,::1]:41011/m/0", "an IPv6 address goes in brackets"),
    (f"redis+cluster://u:{SECRET}@[::1:41011", "an IPv6 address goes in brackets"),
])
def test_a_bad_url_error_masks_every_secret(url: str, says: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (the CLI's own main(), as the console script calls it): a subprocess
    per URL would cost a second each; one subprocess test below covers the process."""
    code = main(["--redis-url", url, "queue", "size", "qa"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, (code, err)
    assert says in err
    assert SECRET not in err and "u:***@" in err


def test_an_unknown_scheme_lists_the_sentinel_and_cluster_schemes() -> None:
    err = assert_one_line(cli("redis-sentinel://h:26379/m"), 2)
    for scheme in ("rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://",
                   "redis+cluster://", "rediss+cluster://"):
        assert scheme in err


def test_a_sentinel_url_to_nothing_is_one_bounded_line(short_tmp: Path) -> None:
    """No sentinel at the port (as the user met it), then a live sentinel that knows no
    such service: each a clear line naming the sentinels and the service, exit 1,
    without redis-py's client reprs."""
    port = free_port()
    err = assert_one_line(cli(f"redis+sentinel://u:{SECRET}@127.0.0.1:{port}/mymaster/0"), 1)
    assert f"no Sentinel at 127.0.0.1:{port} named a primary for service 'mymaster': " \
           "none answered" in err
    assert len(err) < 250 and "ConnectionPool" not in err and SECRET not in err
    sentinel = Node(short_tmp, "sentinel", [], sentinel=True)
    sentinel.start()
    try:
        err = assert_one_line(cli(f"redis+sentinel://127.0.0.1:{sentinel.port}/nosuch"), 1)
    finally:
        sentinel.stop()
    assert f"no Sentinel at 127.0.0.1:{sentinel.port} named a primary for service " \
           "'nosuch': none knows a primary for it" in err
    assert len(err) < 250


def test_rediss_to_a_server_without_tls_fails_within_seconds(short_tmp: Path) -> None:
    """A one-shot command over rediss:// to a plain valkey-server: the TLS handshake is
    bounded by the 5 s connect timeout (it was the 30 s socket timeout), one line, exit 1."""
    server = RedisServer(data_dir=short_tmp / "plain", port=free_port(), persistent=False)
    server.start()
    try:
        started = time.monotonic()
        err = assert_one_line(cli(f"rediss://127.0.0.1:{server.port}/0"), 1)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert f"no TLS handshake from 127.0.0.1:{server.port} within 5 s" in err
    assert elapsed < 15, elapsed


def test_rediss_sentinel_to_a_sentinel_without_tls_fails_within_seconds(
        short_tmp: Path) -> None:
    """rediss+sentinel:// to a plain sentinel: the handshake with each sentinel is bounded
    by the 5 s connect timeout (it was the 30 s socket timeout, ~32 s in all), one line,
    exit 1."""
    sentinel = Node(short_tmp, "sentinel", [], sentinel=True)
    sentinel.start()
    try:
        started = time.monotonic()
        err = assert_one_line(cli(f"rediss+sentinel://127.0.0.1:{sentinel.port}/mymaster/0",
                                  timeout=60), 1)
        elapsed = time.monotonic() - started
    finally:
        sentinel.stop()
    assert f"no Sentinel at 127.0.0.1:{sentinel.port} named a primary" in err
    assert elapsed < 15, elapsed


def test_rediss_cluster_to_a_server_without_tls_fails_within_seconds(short_tmp: Path) -> None:
    """rediss+cluster:// (with a query option) to a plain server: each node's handshake is
    bounded by the 5 s connect timeout (it took ~62 s), one line, exit 1."""
    server = RedisServer(data_dir=short_tmp / "plain", port=free_port(), persistent=False)
    server.start()
    try:
        started = time.monotonic()
        err = assert_one_line(cli(f"rediss+cluster://127.0.0.1:{server.port}?ssl_cert_reqs=none",
                                  timeout=90), 1)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert f"no TLS handshake from 127.0.0.1:{server.port} within 5 s" in err
    assert elapsed < 20, elapsed


def test_a_cluster_url_with_an_unknown_option_is_refused_as_a_process() -> None:
    """As the user met it: `?foo=1` on a cluster URL exits 2 naming the option, like a
    plain URL does, before any connection (nothing listens at the port)."""
    err = assert_one_line(cli(f"redis+cluster://127.0.0.1:{free_port()}?foo=1"), 2)
    assert "unknown option 'foo' for redis+cluster://" in err


def test_a_cluster_url_option_is_typed_and_wins_as_for_a_plain_url() -> None:
    """?socket_timeout=7 reaches the cluster client as 7.0 (it was the string '7', and
    lost to the caller's default); no node needs to answer (LazyCluster keeps options)."""
    client = connect(f"redis+cluster://127.0.0.1:{free_port()}?socket_timeout=7"
                     "&health_check_interval=3")
    options = client.__dict__["_sq_options"]
    assert options["socket_timeout"] == 7.0 and options["health_check_interval"] == 3
