"""A worker's job lines written without a LogRecord (logs.info_line): the same bytes a
record would give, records seen by the application's logging when it has any, lines
held back kept in order, and the hot path's own command packing."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import redis
from redis.connection import Connection

from supervisor_q import procid
from supervisor_q.logs import (
    CHILD_FORMAT,
    TEXT_FORMAT,
    JobFilter,
    JsonFormatter,
    LineHandler,
    TextFormatter,
    info_line,
    iso_time,
    release_lines,
)
from supervisor_q.queue.hotpath import pack_evalsha
from supervisor_q.worker.joblog import JobLog
from supervisor_q.worker.report import NullReporter

JOB = ("j-1", "app.send", "mail")
ISO_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


@pytest.fixture
def root_handler() -> Iterator[tuple[LineHandler, io.StringIO]]:
    """The root logger as configure_logging sets it up, writing into a StringIO (set
    again by _alone() inside the test: pytest adds its capture handler for the call)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    handler = LineHandler(stream)
    handler.addFilter(JobFilter())
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield handler, stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def _alone(handler: LineHandler) -> None:
    logging.getLogger().handlers[:] = [handler]


def _as_record(formatter: logging.Formatter, message: str) -> str:
    record = logging.LogRecord("supervisor_q.jobs", logging.INFO, __file__, 1, "%s",
                               (message,), None)
    record.job_id, record.job, record.queue = JOB
    return formatter.format(record)


@pytest.mark.parametrize("make", [lambda: TextFormatter(TEXT_FORMAT),
                                  lambda: TextFormatter(CHILD_FORMAT), JsonFormatter],
                         ids=["text", "child", "json"])
def test_a_job_line_reads_as_the_record_would(root_handler, make) -> None:
    handler, stream = root_handler
    _alone(handler)
    handler.setFormatter(make())
    message = "job j-1 app.send on mail: started (attempt 1)"
    assert info_line(logging.getLogger("supervisor_q.jobs"), message, JOB)
    fast = stream.getvalue()
    slow = _as_record(handler.formatter, message) + "\n"
    def timeless(line: str) -> str:
        return re.sub(ISO_MS, "T", line)
    if isinstance(handler.formatter, JsonFormatter):
        fast_body, slow_body = json.loads(fast), json.loads(slow)
        assert fast_body.pop("time") and slow_body.pop("time")
        assert fast_body == slow_body and list(fast_body) == list(slow_body)
    else:
        assert timeless(fast) == timeless(slow)
    assert str(procid.pid()) in fast or handler.formatter._fmt == CHILD_FORMAT


def test_the_applications_handler_sees_the_job_lines(root_handler) -> None:
    """A handler of the application's on the jobs logger (or a second root handler, or
    a filter) gets real records: the fast path steps aside."""
    handler, stream = root_handler
    _alone(handler)
    handler.setFormatter(TextFormatter(TEXT_FORMAT))
    seen: list[logging.LogRecord] = []
    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)
    jobs = logging.getLogger("supervisor_q.jobs")
    mine = Keep()
    jobs.addHandler(mine)
    try:
        joblog = JobLog(NullReporter(), "w")
        joblog.job_started("j-1", "app.send", "mail", 60, 1)
        joblog.job_finished("j-1")
    finally:
        jobs.removeHandler(mine)
    assert [r.getMessage().split(": ")[-1][:7] for r in seen] == ["started", "done in"]
    assert seen[0].job_id == "j-1" and seen[1].outcome == "done"
    assert stream.getvalue().count("\n") == 2  # the root's handler wrote them as well
    root_also = Keep()
    logging.getLogger().addHandler(root_also)
    try:
        assert not info_line(jobs, "x", JOB)
    finally:
        logging.getLogger().removeHandler(root_also)


def test_an_end_line_is_held_until_the_next_line_and_order_is_kept(root_handler) -> None:
    handler, stream = root_handler
    _alone(handler)
    handler.setFormatter(TextFormatter(CHILD_FORMAT))
    joblog = JobLog(NullReporter(), "w")
    joblog.job_started("a", "app.send", "mail", 60, 1)
    joblog.job_finished("a")
    assert "done in" not in stream.getvalue()  # held: one write with the next line
    logging.getLogger("app").warning("between")
    joblog.job_started("b", "app.send", "mail", 60, 1)
    joblog.job_finished("b")
    joblog.flush()  # what the worker calls before a blocking wait
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1][:12] for line in lines] == [
        "job a app.se", "job a app.se", "between", "job b app.se", "job b app.se"]
    assert "done in" in lines[1] and "done in" in lines[4]
    for _ in range(LineHandler.HOLD_LINES + 1):
        info_line(logging.getLogger("supervisor_q.jobs"), "held", JOB, hold=True)
    assert stream.getvalue().count("held") >= LineHandler.HOLD_LINES  # bounded
    release_lines()
    assert stream.getvalue().count("held") == LineHandler.HOLD_LINES + 1


def test_iso_time_matches_datetime_across_seconds() -> None:
    from datetime import datetime
    for at in (0.0, 0.9995, 1_700_000_000.0, 1_700_000_000.999, 1_795_642_505.5384):
        assert iso_time(at) == datetime.fromtimestamp(at).astimezone().isoformat(
            timespec="milliseconds")


@pytest.mark.parametrize("args", [[1, "two", b"\xff\x00three", 4.5, -7, ""],
                                  [], ["\u00e9t\u00e9", 2**70]])
def test_the_packed_command_is_redis_pys(args) -> None:
    keys = ["sq:{q}:ready", "sq:{q}:notify"]
    expected = Connection().pack_command("EVALSHA", "a" * 40, len(keys), *keys, *args)
    assert pack_evalsha("a" * 40, keys, args) == b"".join(expected)
    for bad in (None, True, object()):
        with pytest.raises(redis.DataError):
            pack_evalsha("a" * 40, keys, [bad])


HOSTILE = [("j-1", "app.send", "mail"), ("x" * 150, "app." + "n" * 300, "q"),
           ("id\nwith\x1bcontrols", "caf\u00e9.\u00e9t\u00e9", "q\u00e9"),
           ("\udcff\udc80raw", "tab\there", "mail"), ("", "", "")]


@pytest.mark.parametrize("make", [lambda: TextFormatter(TEXT_FORMAT),
                                  lambda: TextFormatter(CHILD_FORMAT), JsonFormatter],
                         ids=["text", "child", "json"])
def test_job_lines_are_the_record_paths_bytes_for_hostile_jobs(root_handler, make) -> None:
    """JobLog's lines through info_line, and the same JobLog's lines as records (the
    fast path stepped aside by a record factory), are the same bytes once the times
    (and the runtime) are blanked: ids, names and queues escaped alike."""
    handler, stream = root_handler
    _alone(handler)
    handler.setFormatter(make())
    def run() -> list[str]:
        stream.seek(0)
        stream.truncate()
        joblog = JobLog(NullReporter(), "w")
        for attempt, (job_id, name, queue) in enumerate(HOSTILE, 1):
            joblog.job_started(job_id, name, queue, 60, attempt)
            joblog.job_finished(job_id, "failed" if attempt % 2 else "done")
        joblog.flush()
        return [re.sub(r"in \d+\.\d{3}s", "in Ns", re.sub(ISO_MS, "T", line))
                for line in stream.getvalue().splitlines()]
    fast = run()
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(lambda *a, **k: factory(*a, **k))  # records, not lines
    try:
        slow = run()
    finally:
        logging.setLogRecordFactory(factory)
    assert len(fast) == 2 * len(HOSTILE)
    from supervisor_q.queue.payload import loggable
    for attempt, (job_id, name, queue) in enumerate(HOSTILE, 1):  # the message as it was
        started = (f"job {loggable(job_id, 100)} {loggable(name, 200)} on {queue}: "
                   f"started (attempt {attempt})")
        line = fast[2 * attempt - 2]
        assert (json.loads(line)["message"] if line.startswith("{") else line).endswith(
            started)
    if isinstance(handler.formatter, JsonFormatter):
        fast_bodies = [json.loads(line) for line in fast]
        slow_bodies = [json.loads(line) for line in slow]
        for body in slow_bodies:
            body.pop("outcome", None)  # a record's extra the JSON line leaves out
        assert fast_bodies == slow_bodies
    else:
        assert fast == slow


def _uncached_iso_time(created: float) -> str:
    """iso_time as it was before its millisecond cache (the text it must keep)."""
    from datetime import datetime
    whole = int(created // 1)
    shown = datetime.fromtimestamp(whole).astimezone().isoformat()
    return f"{shown[:19]}.{int((created - whole) * 1000):03d}{shown[19:]}"


def test_iso_time_within_a_millisecond_is_the_uncached_text() -> None:
    """iso_time keeps the last millisecond's text: instants in and around it, either
    side of its edges and of a second's, read as they did without the cache."""
    base = 1_795_642_505.0
    steps = [0.0, 1e-7, 0.0004, 0.000999, 0.001, 0.0010001, 0.0019999, 0.4995, 0.9989999,
             0.999, 0.9999999, 1.0, 1.0000002, 1.0015]
    ats = [base + s for s in steps] + [base + s for s in reversed(steps)] + [
        0.0005, -1.5, 2.0**32 + 0.5, 2.0**33 + 0.75]
    ats += [base + 0.001 * k + e for k in range(0, 1000, 7) for e in (-3e-7, 0.0, 3e-7)]
    for at in ats:
        assert iso_time(at) == _uncached_iso_time(at), at


def test_a_forked_child_writes_its_own_pid_in_a_job_line(root_handler, tmp_path) -> None:
    """The text line's " INFO [pid] name: " is kept on the formatter; a fork makes it
    again (the child's pid, not the parent's)."""
    import os
    handler, stream = root_handler
    _alone(handler)
    handler.setFormatter(TextFormatter(TEXT_FORMAT))
    jobs = logging.getLogger("supervisor_q.jobs")
    assert info_line(jobs, "parent", JOB)
    assert f"[{os.getpid()}]" in stream.getvalue()
    out = tmp_path / "child"
    pid = os.fork()
    if pid == 0:  # the child: its line into a file, then out at once
        try:
            handler.stream = open(out, "w")  # noqa: SIM115
            info_line(jobs, "child", JOB)
            handler.stream.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert f"INFO [{pid}] supervisor_q.jobs: child" in out.read_text()


def test_any_other_logging_on_the_way_gets_records(root_handler) -> None:
    """A filter on the jobs logger, a handler on a logger between it and the root, a
    filter of the application's on the root's handler, a level over INFO on it: each
    makes info_line step aside (False: the caller logs a record); the plain setup
    again writes the line."""
    handler, stream = root_handler
    _alone(handler)
    handler.setFormatter(TextFormatter(TEXT_FORMAT))
    jobs = logging.getLogger("sq_test_lines")  # right under the root, as the jobs logger
    middle = logging.getLogger("sq_test_middle")
    below = logging.getLogger("sq_test_middle.jobs")
    keep = logging.Filter("nothing.of.ours")
    cases = [(jobs, lambda: jobs.addFilter(keep), lambda: jobs.removeFilter(keep)),
             (below, lambda: below.addFilter(keep), lambda: below.removeFilter(keep)),
             (below, lambda: middle.addHandler(logging.NullHandler()),
              lambda: middle.handlers.clear()),
             (jobs, lambda: handler.addFilter(keep), lambda: handler.removeFilter(keep)),
             (below, lambda: handler.setLevel(logging.WARNING),
              lambda: handler.setLevel(logging.NOTSET))]
    for logger, add, remove in cases:
        add()
        try:
            assert not info_line(logger, "aside", JOB)
        finally:
            remove()
        assert info_line(logger, "written", JOB)
    assert "aside" not in stream.getvalue()
    assert stream.getvalue().count("written") == len(cases)
