"""Log formats: timestamps with the UTC offset and milliseconds, job fields on records
logged inside a job, and a child's output line as a JSON record."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor_q.jobs.context import JobContext, reset_current_job, set_current_job
from supervisor_q.logs import TEXT_FORMAT, JobFilter, JsonFormatter, TextFormatter, bind_job
from supervisor_q.master.logfile import LogFile, Ring
from supervisor_q.master.output import OutputCapture, Stream
from supervisor_q.master.wakeup import Wakeup
from supervisor_q.queue.payload import build

ISO_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(JobFilter())
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, stream, handler
    logger.removeHandler(handler)
    bind_job(None)


def test_json_records_have_milliseconds_the_offset_and_the_job(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    payload = build("app.send", "mail", [], {})
    token = set_current_job(JobContext(payload.id, "app.send", "mail", 1, payload))
    logger.info("inside")
    reset_current_job(token)
    logger.info("outside")
    inside, outside = (json.loads(x) for x in stream.getvalue().splitlines())
    assert re.fullmatch(ISO_MS, inside["time"])
    assert (inside["job_id"], inside["job"], inside["queue"]) == (payload.id, "app.send",
                                                                  "mail")
    assert "job_id" not in outside


def test_text_lines_have_the_offset_and_a_job_suffix(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(TextFormatter(TEXT_FORMAT))
    bind_job("42", "app.send", "mail")
    logger.warning("inside")
    line = stream.getvalue().strip()
    assert re.match(ISO_MS + r" WARNING \[\d+\] tests.logs: inside "
                    r"\(job_id=42 job=app.send queue=mail\)$", line), line


def test_a_childs_output_line_becomes_a_json_record(captured) -> None:
    _, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    output_log = logging.getLogger("supervisor_q.output")
    output_log.addHandler(handler)
    with Wakeup() as wakeup:
        capture = OutputCapture(wakeup)
        capture.as_json = True  # as under --log-format json
        try:
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            os.write(write_end, b'plain line\n{"message": "own", "level": "warning", '
                     b'"job_id": "7"}\nhalf')
            os.close(write_end)
            line_stream = Stream(("emails", 2, "stderr"), "emails#2", 4321, None)
            assert capture.read_fd(line_stream, read_end, None) is True  # EOF
            capture.flush(line_stream)
            os.close(read_end)
        finally:
            capture.close()
            output_log.removeHandler(handler)
    plain, own, half = (json.loads(x) for x in stream.getvalue().splitlines())
    for record in (plain, own, half):
        assert (record["program"], record["process"], record["pid"], record["stream"]) == (
            "emails", "emails#2", 4321, "stderr")
    assert plain["message"] == "plain line" and half["message"] == "half"
    assert own["message"] == "own" and own["job_id"] == "7"  # the child's JSON, merged
    assert own["level"] == "warning" and plain["level"] == "info"
    assert capture.rings[("emails", 2, "stderr")].last_lines(1) == b"half"


def test_ring_keeps_the_last_bytes_and_answers_from_an_offset() -> None:
    ring = Ring(size=10)
    ring.append(b"one\ntwo\n")
    offset = ring.end
    ring.append(b"three\n")
    assert ring.since(offset) == b"three\n"
    assert ring.last_lines(1) == b"three\n"
    assert bytes(ring.data) == b"two\nthree\n"
    assert ring.since(0) == b"two\nthree\n"  # what was dropped is gone, the rest comes


def test_log_file_rotates_at_maxbytes_keeping_lines_whole(tmp_path) -> None:
    path = tmp_path / "p.log"
    sink = LogFile(str(path), maxbytes=25, backups=2)
    for number in range(10):
        sink.write(f"line {number}\n".encode())  # 7 bytes each
    sink.write(b"line 10\nline 11\nline 12\n")
    sink.close()
    files = [Path(f"{path}.2"), Path(f"{path}.1"), path]
    assert not Path(f"{path}.3").exists()
    assert all(f.stat().st_size <= 25 for f in files)
    lines = [x for f in files for x in f.read_text().splitlines()]
    assert lines == [f"line {n}" for n in range(int(lines[0].split()[1]), 13)]



@pytest.mark.parametrize("backups", [1, 3])
def test_the_log_file_never_goes_missing_while_it_rotates(tmp_path, backups: int) -> None:
    """A forked writer rotates the file thousands of times while this process keeps
    looking for it: a reader following the path (`tail -F`, a log shipper) never finds
    it gone, and every line is in the file or a backup."""
    path = tmp_path / "p.log"
    pid = os.fork()
    if pid == 0:  # the writer
        try:
            sink = LogFile(str(path), maxbytes=64, backups=backups)
            for number in range(4000):
                sink.write(f"line {number:05d}\n".encode())  # 11 bytes: 5 a file
            sink.close()
        finally:
            os._exit(0)
    missing, seen = 0, False
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if path.exists():
            seen = True
        elif seen:
            missing += 1
    assert path.exists()
    assert missing == 0, f"{path.name} was missing {missing} times while it rotated"
    assert not Path(f"{path}.new").exists()
    kept = [x for f in [*(Path(f"{path}.{n}") for n in range(backups, 0, -1)), path]
            for x in f.read_text().splitlines()]
    first = int(kept[0].split()[1])
    assert kept == [f"line {n:05d}" for n in range(first, 4000)]


def test_clock_time_is_strftimes_time_of_day_for_any_instant() -> None:
    """The process title's "since HH:MM:SS" comes from the per-second cache the log
    lines' time uses: for each instant, what time.strftime says."""
    import time

    from supervisor_q.logs import clock_time, iso_time

    base = time.time()
    for t in (base, base + 0.999, base + 1.0, base - 86_400.5, 1_700_000_000.0, base):
        assert clock_time(t) == time.strftime("%H:%M:%S", time.localtime(t)), t
        assert iso_time(t)[11:19] == clock_time(t)
