"""`pause/continue --queue` and `status --all` against what a user (or anyone who can
write Redis) may hand them: names outside the queue rule, control characters."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from supervisor_q.cli.main import main
from supervisor_q.fleet.registry import beat
from supervisor_q.queue.pauses import PAUSED_KEY
from tests.cli.test_cli import assert_one_line, clean_env

BAD_NAMES = ["a b", "x\ny", "qé", "*", "{app}high", " q", ""]


@pytest.mark.parametrize("control", ["pause", "continue"])
@pytest.mark.parametrize("name", BAD_NAMES, ids=ascii)
def test_pause_and_continue_refuse_a_queue_name_outside_the_rule(
        control: str, name: str, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (the console script's own main()); the process test is below."""
    with pytest.raises(SystemExit) as exit_:
        main(["--redis-url", redis_url, control, "--queue", name])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, (exit_.value.code, err)
    assert "bad queue name" in err and "letters, digits and _ . : - only" in err
    assert len(err) < 300
    assert redis.Redis.from_url(redis_url).smembers(PAUSED_KEY) == set()


def test_pause_queue_with_a_newline_fails_as_a_process_and_a_good_name_works(
        redis_url: str) -> None:
    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                               *argv], env=clean_env(), capture_output=True, text=True,
                              timeout=30)

    err = assert_one_line(cli("pause", "--queue", "x\ny"), 2)
    assert "supervisor-q pause: argument --queue: bad queue name 'x\\ny'" in err
    good = cli("pause", "--queue", "app:high-1.b_2")
    assert good.returncode == 0 and "paused on every host" in good.stdout, good
    assert redis.Redis.from_url(redis_url).smembers(PAUSED_KEY) == {b"app:high-1.b_2"}


def test_status_all_text_escapes_control_characters_held_in_redis(redis_url: str) -> None:
    """A hostile heartbeat (anyone who can write Redis can write one): each value stays
    on its own line, escaped, and no forged line appears."""
    client = redis.Redis.from_url(redis_url)
    client.sadd(PAUSED_KEY, "x\ny")  # written past the CLI's check
    status = {"host": "h1\nmaster forged alive", "pid": 7, "version": "1\x1b[2J",
              "started_at": 1.0, "paused_queues": ["x\ny"],
              "master": {"alerts": ["a\rFORGED\u2028b"]}, "programs": []}
    assert beat(client, "m1\nFORGED", status, [], 30.0)
    result = subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                             "status", "--all"], env=clean_env(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, lines  # the head line and the one alert
    assert lines[0].startswith("master m1\\nFORGED alive (host h1\\nmaster forged alive,")
    assert "version 1\\x1b[2J" in lines[0] and "paused queues: x\\ny" in lines[0]
    assert lines[1] == "  ALERT a\\rFORGED\\u2028b"
    assert "\x1b" not in result.stdout and "\r" not in result.stdout


def test_status_all_text_survives_a_malformed_heartbeat(redis_url: str) -> None:
    """A heartbeat without the fields a master writes (no `master`, odd programs) is
    shown as malformed; the other masters are still listed; no traceback."""
    client = redis.Redis.from_url(redis_url)
    assert beat(client, "odd", {"programs": [{"name": 1}]}, [], 30.0)
    good = {"host": "h2", "pid": 8, "version": "1", "started_at": 1.0, "paused_queues": [],
            "master": {}, "programs": []}
    assert beat(client, "good", good, [], 30.0)
    result = subprocess.run([sys.executable, "-m", "supervisor_q", "--redis-url", redis_url,
                             "status", "--all"], env=clean_env(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "master odd alive (host ?, pid ?" in result.stdout, result.stdout
    assert "(its heartbeat is malformed" in result.stdout
    assert "master good alive (host h2, pid 8" in result.stdout
