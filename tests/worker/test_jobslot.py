"""The job slot's format (worker/jobslot.py) and the summary lines of a child that has
one (worker/slotreport.py, report.py's M lines)."""

from __future__ import annotations

import mmap
import os
import threading
import time

from supervisor_q.queue.payload import MAX_ID_LENGTH
from supervisor_q.worker import jobslot
from supervisor_q.worker.joblog import JobLog
from supervisor_q.worker.jobslot import SLOT_SIZE, UNNAMED, SlotWriter, read_slot, read_state
from supervisor_q.worker.report import parse_lines
from supervisor_q.worker.slotreport import MAX_TALLIED, SummaryReporter


def new_slot() -> mmap.mmap:
    made = jobslot.shared_slot()
    assert made is not None, "memfd_create and mmap work on Linux"
    fd, slot = made
    os.close(fd)
    return slot


def test_the_longest_id_a_queue_and_a_name_fit_and_come_back_exactly() -> None:
    """An id of MAX_ID_LENGTH four-byte characters, surrogate escapes (bytes that are not
    UTF-8) in the queue and name: all read back as written, with attempts and times."""
    slot = new_slot()
    writer = SlotWriter(slot)
    job_id = "\U0001f600" * MAX_ID_LENGTH
    queue, name = "q\udcff\udc80" + "x" * 200, "app.jobs:" + "n" * 1000 + "\udce9"
    started = writer.start(job_id, name, queue, 30.0, 3)
    job = read_slot(slot)
    assert job is not None
    assert (job.id, job.queue, job.name, job.attempts) == (job_id, queue, name, 3)
    assert job.started_at == started and job.deadline == started + 30.0
    assert job.serial == 1
    writer.idle()
    assert read_state(slot) == (1, None)


def test_names_that_do_not_fit_say_so_and_keep_the_deadline() -> None:
    slot = new_slot()
    writer = SlotWriter(slot)
    writer.start("i" * SLOT_SIZE, "n", "q", 5.0, 1)
    job = read_slot(slot)
    assert job is not None and (job.id, job.queue, job.name) == ("", "", UNNAMED)
    assert job.deadline > job.started_at  # still killed at its deadline
    writer.start("short", "n", "q", 0, 1)  # no timeout: deadline inf, names back
    job = read_slot(slot)
    assert job is not None and job.id == "short" and job.deadline == float("inf")
    assert job.serial == 2


def test_a_torn_read_is_retried_never_mixing_two_jobs() -> None:
    """A writer starting jobs as fast as it can, each job's names made from its serial:
    every snapshot the reader takes pairs a head with that job's own names."""
    slot = new_slot()
    stop = threading.Event()

    def write() -> None:
        writer = SlotWriter(slot)
        n = 0
        while not stop.is_set():
            n += 1
            writer.start(f"id-{n}" * ((n - 1) % 50 + 1), f"name-{n}", f"q-{n}", 60.0, n)
            if n % 3 == 0:
                writer.idle()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        seen, give_up = 0, time.monotonic() + 10
        while seen < 5000 and time.monotonic() < give_up:
            serial, job = read_state(slot)
            if job is not None:
                assert job.serial == serial
                assert job.id == f"id-{serial}" * ((serial - 1) % 50 + 1)
                assert (job.name, job.queue, job.attempts) == (
                    f"name-{serial}", f"q-{serial}", serial)
                seen += 1
        assert seen == 5000
    finally:
        stop.set()
        thread.join()


def test_a_scribbled_slot_gives_up_the_names_instead_of_hanging() -> None:
    """Lengths past the slot's end (a job's code wrote over it): bounded retries, then
    the job is kept under UNNAMED with its deadline."""
    slot = new_slot()
    SlotWriter(slot).start("a", "b", "c", 10.0, 1)
    slot[24:40] = b"\xff" * 16
    job = read_slot(slot)
    assert job is not None and job.name == UNNAMED and job.deadline > 0


def summaries(read_fd: int) -> list:
    events, rest = parse_lines(os.read(read_fd, 1 << 20))
    assert rest == b""
    return events


def test_a_summary_carries_every_wait_and_runtime_by_group() -> None:
    read_fd, write_fd = os.pipe()
    slot = new_slot()
    reporter = SummaryReporter(write_fd, slot)
    reporter.ready(None)
    reporter.sent_at = float("inf")  # no summary at a finish: the test flushes
    for n, outcome in enumerate(["done", "failed", "done"]):
        reporter.job_started(f"id\n{n}", "app:job", "q\udcff", 30.0, 1, wait=0.25 * n)
        assert read_slot(slot) is not None
        reporter.job_finished(f"id\n{n}", outcome)
        assert read_slot(slot) is None
    reporter.job_refused("bad", "(unreadable)", "q\udcff", 1, wait=1.5)
    reporter.flush()
    reporter.flush()  # nothing more: no second line
    ready, summary = summaries(read_fd)
    assert ready.kind == "ready" and summary.kind == "summary"
    waits, runtimes = summary.summary
    assert waits == [("q\udcff", "app:job", [0.0, 0.25, 0.5]),
                     ("q\udcff", "(unreadable)", [1.5])]
    groups = {(q, n, o): len(v) for q, n, o, v in runtimes}
    assert groups == {("q\udcff", "app:job", "done"): 2, ("q\udcff", "app:job", "failed"): 1,
                      ("q\udcff", "(unreadable)", "failed"): 1}
    assert all(0 <= r < 1 for _q, _n, _o, v in runtimes for r in v)


def test_summaries_go_at_a_finish_after_the_batch_or_max_tallied_jobs() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    reporter = JobLog(SummaryReporter(write_fd, new_slot()), "w#1")  # still works wrapped
    reporter.inner.sent_at = float("inf")  # within the batch: only the count sends
    for n in range(MAX_TALLIED + 1):
        reporter.job_started(str(n), "j", "q", 30.0, 1)
        reporter.job_finished(str(n))
    [summary] = summaries(read_fd)  # the 501st waits for the next one
    assert sum(len(v) for _q, _n, _o, v in summary.summary[1]) == MAX_TALLIED
    reporter.inner.sent_at = 0.0  # the batch's time is over: the next start goes at once
    reporter.job_started("late", "j", "q", 30.0, 1, wait=2.0)
    [start] = summaries(read_fd)
    assert start.summary[0] == [("q", "j", [0.0, 2.0])]
    assert [(q, n, o, len(v)) for q, n, o, v in start.summary[1]] == [("q", "j", "done", 1)]


def test_hostile_summary_lines_are_garbled_events_never_errors() -> None:
    lines = [b"M {", b"M []", b'M {"w":[],"r":[],"x":1}', b'M {"w":[["q","n",[]]],"r":[]}',
             b'M {"w":[["q","n",[-1]]],"r":[]}', b'M {"w":[["q","n",[Infinity]]],"r":[]}',
             b'M {"w":[],"r":[["q","n","exploded",[1]]]}', b'M {"w":[],"r":[["q","n",[],[1]]]}',
             b'M {"w":[[1,"n",[1]]],"r":[]}', b'M {"w":[["q","n",[1e400]]],"r":[]}',
             b'M {"w":[["q","n",[true]]],"r":[]}', b"M " + b"[" * 100_000, b"M \xff\xfe",
             b'M {"w":[],"r":[["q","n","done",[1e12]]]}']
    events, rest = parse_lines(b"\n".join(lines) + b"\n")
    assert rest == b"" and [e.kind for e in events] == ["garbled"] * len(lines)
    assert all(len(e.line) <= 200 for e in events)


def test_a_held_finish_keeps_the_job_named_until_the_next_start_or_flush() -> None:
    """As PipeReporter holds an E line: the finished job's ack waits for the next
    reserve, so the slot names it (a child dying then has it handed back) and it is not
    counted yet; a job near its deadline is never held."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    slot = new_slot()
    reporter = SummaryReporter(write_fd, slot)
    reporter.hold_finishes(5.0)
    reporter.sent_at = float("inf")  # within the batch: only flush() sends
    reporter.job_started("a", "j", "q", 60.0, 1)
    reporter.job_finished("a")
    held = read_slot(slot)
    assert held is not None and held.id == "a"
    reporter.job_started("b", "j", "q", 2.0, 1)  # a to the tally; b too near: not held
    reporter.job_finished("b")
    assert read_slot(slot) is None
    reporter.flush()
    [summary] = summaries(read_fd)
    assert [(q, n, o, len(v)) for q, n, o, v in summary.summary[1]] == [("q", "j", "done", 2)]
    reporter.job_started("c", "j", "q", 60.0, 1)
    reporter.job_finished("c")
    reporter.flush()
    assert read_slot(slot) is None
